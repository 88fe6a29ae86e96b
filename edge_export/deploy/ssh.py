"""A device reached with the system's OpenSSH client (``ssh``): run commands, send and fetch files.

Host keys are checked as the user's ssh configuration says (an unknown or changed host key is refused,
never accepted silently), keys come from the user's agent and ~/.ssh/config, and ``BatchMode`` keeps
ssh from prompting. ``options`` (``KEY=VALUE``, passed as ``-o KEY=VALUE`` before ours, so they win)
select e.g. ``UserKnownHostsFile`` or ``IdentityFile``. Files travel through the ssh channel itself
(``tar``/``cat`` on the device), so the device needs no scp/sftp server.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from edge_export.core.errors import EdgeExportError
from edge_export.core.process import child_popen_kwargs
from edge_export.core.untrusted import printable

SCHEME = "ssh://"
CONNECT_TIMEOUT_S = 20
# a dead link is noticed after ServerAliveInterval * ServerAliveCountMax seconds without an answer
KEEPALIVE = ("ServerAliveInterval=15", "ServerAliveCountMax=4")
SSH_FAILED = 255  # ssh's own exit status for connection and authentication failures


@dataclass(frozen=True)
class SshDevice:
    """A device to reach over SSH: ``ssh://[user@]host[:port]``."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, url: str) -> SshDevice:
        """``ssh://[user@]host[:port]``: the one parser of every place a device is named (bench --device, tune
        --device, tune.device). The user is a login name, the host a DNS name or an IP address, the port 1..65535:
        nothing that ssh could read as an option (a leading ``-``) or a shell could read as syntax gets through."""
        hint = "use ssh://[user@]host[:port], e.g. ssh://pi@raspberrypi.local:22"
        shown = printable(repr(url), 200)
        if not isinstance(url, str) or not url.startswith(SCHEME):
            raise EdgeExportError(f"not an ssh device: {shown}", hint="use ssh://[user@]host[:port], or local")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:  # an unbalanced [ (IPv6) or a port that is not a number
            raise EdgeExportError(
                f"bad ssh device {shown}: not [user@]host[:port] with a port 1..65535", hint=hint
            ) from None
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.password is not None:
            raise EdgeExportError(f"bad ssh device {shown}: only user, host and port belong in it", hint=hint)
        host, user = parts.hostname or "", parts.username
        if not _valid_host(host):
            raise EdgeExportError(
                f"bad ssh device {shown}: {printable(repr(host), 80)} is not a host name or IP address", hint=hint
            )
        if user is not None and not _USER.fullmatch(user):
            raise EdgeExportError(
                f"bad ssh device {shown}: {printable(repr(user), 80)} is not a login name "
                "(letters, digits, . _ -, not starting with -)",
                hint=hint,
            )
        if port is not None and not 1 <= port <= 65535:
            raise EdgeExportError(f"bad ssh device {shown}: port {port} is not 1..65535", hint=hint)
        return cls(host=host, user=user, port=port)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def name(self) -> str:
        """How the device appears in tables and bench.json: ``user@host[:port]``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (f"{self.user}@" if self.user else "") + host + (f":{self.port}" if self.port else "")


_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"  # (underscores: ssh_config host aliases)
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


def _valid_host(host: str) -> bool:
    """A DNS name or ssh_config alias (labels of letters, digits, _ and inner hyphens) or an IPv4/IPv6 address."""
    if not host or len(host) > 253:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return _HOSTNAME.fullmatch(host) is not None


def parse_options(options: Sequence[str]) -> list[str]:
    """``KEY=VALUE`` strings (an ssh_config keyword and its value), checked."""
    out = []
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key) or not value:
            raise EdgeExportError(
                f"bad ssh option {item!r}", hint="use KEY=VALUE, e.g. --ssh-option IdentityFile=~/.ssh/pi_ed25519"
            )
        out.append(f"{key}={value}")
    return out


@dataclass
class SshConnection:
    device: SshDevice
    options: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if shutil.which("ssh") is None:
            raise EdgeExportError("the OpenSSH client (ssh) is not installed", hint="install openssh-client")

    def command(self, remote_command: str) -> list[str]:
        args = ["ssh"]
        for option in (*self.options, "BatchMode=yes", f"ConnectTimeout={CONNECT_TIMEOUT_S}", *KEEPALIVE):
            args += ["-o", option]
        if self.device.port:
            args += ["-p", str(self.device.port)]
        return [*args, "--", self.device.destination, remote_command]  # "--": nothing after it is an option

    def run(
        self, remote_command: str, *, doing: str, stdin: Path | None = None, timeout: float | None = None
    ) -> subprocess.CompletedProcess:
        """Run a shell command on the device; ssh's own failures (255) become EdgeExportError naming ``doing``."""
        try:
            with open(stdin, "rb") if stdin is not None else contextlib.nullcontext(subprocess.DEVNULL) as source:
                proc = subprocess.run(
                    self.command(remote_command),
                    stdin=source,
                    capture_output=True,
                    timeout=timeout,
                    **child_popen_kwargs(),
                )  # dies with us: no ssh left behind by a kill
        except subprocess.TimeoutExpired:
            raise EdgeExportError(f"{self.device.name}: no answer within {timeout:.0f}s while {doing}") from None
        if proc.returncode == SSH_FAILED:
            raise self._ssh_error(proc.stderr.decode(errors="replace"), doing)
        return proc

    def send_archive(self, archive: Path, remote_dir: str) -> None:
        """Unpack a local .tar.gz into ``remote_dir`` on the device."""
        q = shlex.quote(remote_dir)
        proc = self.run(f"mkdir -p {q} && tar -xzf - -C {q}", doing=f"copying {archive.name}", stdin=archive)
        if proc.returncode != 0:
            raise EdgeExportError(
                f"{self.device.name}: could not unpack {archive.name} into {remote_dir}: {tail(proc)}",
                hint="the device needs tar and a writable --remote-dir",
            )

    def read_file(self, remote_path: str, doing: str) -> bytes:
        proc = self.run(f"cat {shlex.quote(remote_path)}", doing=doing)
        if proc.returncode != 0:
            raise EdgeExportError(f"{self.device.name}: cannot read {remote_path} ({tail(proc)})")
        return proc.stdout

    def _ssh_error(self, stderr: str, doing: str) -> EdgeExportError:
        name, text = self.device.name, " | ".join(stderr.strip().splitlines()[-3:]) or "no message"
        port = f" -p {self.device.port}" if self.device.port else ""
        if "host key verification failed" in stderr.lower() or "host identification has changed" in stderr.lower():
            return EdgeExportError(
                f"{name}: the device's host key is not trusted, refusing to connect (host-key checking is on): {text}",
                hint=f"check the key's fingerprint and accept it once with `ssh{port} {self.device.destination}`, "
                "or point at a known_hosts file with --ssh-option UserKnownHostsFile=FILE",
            )
        if "permission denied" in stderr.lower():
            return EdgeExportError(
                f"{name}: ssh login refused: {text}",
                hint="load the key into your agent (ssh-add) or pass --ssh-option IdentityFile=KEY",
            )
        if "could not resolve hostname" in stderr.lower():
            return EdgeExportError(
                f"{name}: the host name {self.device.host} does not resolve: {text}",
                hint="check the name in --device (or use the device's IP address), and the network",
            )
        if any(
            s in stderr.lower()
            for s in (
                "connection refused",
                "could not resolve",
                "timed out",
                "no route to host",
                "network is unreachable",
            )
        ):
            return EdgeExportError(
                f"{name}: cannot connect while {doing}: {text}",
                hint=f"check that the device is on and that `ssh{port} {self.device.destination}` works",
            )
        return EdgeExportError(
            f"{name}: lost the ssh connection while {doing}: {text}",
            hint="check the network and the device, then run again",
        )


def tail(proc: subprocess.CompletedProcess, lines: int = 4) -> str:
    err = proc.stderr.decode(errors="replace") if isinstance(proc.stderr, bytes) else (proc.stderr or "")
    out = proc.stdout.decode(errors="replace") if isinstance(proc.stdout, bytes) else (proc.stdout or "")
    return " | ".join((err.strip() or out.strip()).splitlines()[-lines:]) or f"exit status {proc.returncode}"
