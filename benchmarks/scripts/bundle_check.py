"""Check a bundle the way a fresh device would use it, and compare its accuracy with this machine's:

    python benchmarks/scripts/bundle_check.py BUNDLE(.tar.gz or folder) --data TEST_DIR [--out DIR]

1. a clean virtual environment (``python -m venv``, NO system site packages) in a temporary folder;
2. ``pip install -r requirements.txt wheels/edge_export-*.whl`` there (needs network access to PyPI);
3. ``import tensorflow`` must fail in it (the bundle's runtime is TF-free);
4. the bundle's own ``run.py bench`` on TEST_DIR, in that venv;
5. the same models benchmarked here (this interpreter, ``bench_run``) for the accuracy to compare.

Writes OUT/bundle_check.json (installed packages, the TensorFlow check, both accuracies) plus both
benchmarks' outputs (OUT/device/, OUT/local/); exits 1 when TensorFlow is importable or an accuracy differs.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import click

from edge_export.benchmarks.suite import bench_run
from edge_export.core.atomic import write_json
from edge_export.core.config import BenchConfig
from edge_export.core.errors import EdgeExportError
from edge_export.core.records.bench import BenchResult
from edge_export.core.run_folder import BenchFiles
from edge_export.core.untrusted import printable, safe_name


def unpack(bundle: Path, dest: Path) -> Path:
    """A bundle folder as is, or a .tar.gz unpacked into ``dest`` (its one top-level folder)."""
    if bundle.is_dir():
        return bundle
    if not tarfile.is_tarfile(bundle):
        raise EdgeExportError(
            "not a bundle folder or .tar.gz", path=bundle, hint="pass what `edge-export package` wrote"
        )
    if not hasattr(tarfile, "data_filter"):  # pragma: no cover - Python < 3.11.4
        raise EdgeExportError(
            "unpacking a bundle safely needs Python 3.11.4 or newer (tarfile filters)",
            path=bundle,
            hint="unpack it yourself and pass the folder",
        )
    try:
        with tarfile.open(bundle) as tar:
            members = tar.getmembers()
            tops = {Path(m.name).parts[0] if Path(m.name).parts else "" for m in members}
            if len(tops) != 1:
                raise EdgeExportError(
                    f"expected one folder in the archive, found {printable(sorted(tops))}",
                    path=bundle,
                    hint="pass what `edge-export package` wrote",
                )
            top = safe_name(tops.pop(), what="the archive's top folder", source=bundle)
            tar.extractall(dest, members=members, filter="data")  # refuses '..', absolute paths and links out
    except tarfile.FilterError as exc:
        raise EdgeExportError(
            f"refused to unpack: {printable(str(exc))}",
            path=bundle,
            hint="the archive has a member outside its folder (or a link out): "
            "not a bundle `edge-export package` wrote",
        ) from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise EdgeExportError(
            f"cannot unpack the archive ({printable(str(exc))})",
            path=bundle,
            hint="a corrupt or truncated copy? copy the bundle again",
        ) from None
    return dest / top


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise EdgeExportError(f"{what} failed (exit status {proc.returncode}): {tail}")
    return proc


def check_bundle(bundle: Path, data: Path, out: Path, config: BenchConfig, echo=print) -> dict[str, Any]:
    from edge_export.deploy.bundle import BundleLayout  # a script on top of the stack: any layer may be used

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edge-export-bundle-check-") as tmp:
        tmp_dir = Path(tmp)
        layout = BundleLayout(unpack(bundle, tmp_dir / "unpacked"))
        info = layout.read_info()
        venv = tmp_dir / "venv"
        python = venv / "bin" / "python"
        started = time.perf_counter()
        echo(f"creating a clean venv (no system site packages) in {venv}")
        _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
        echo(f"pip install -r {info['requirements']} {info['wheel']}  ({', '.join(info['pinned'])})")
        _run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "-r",
                str(layout.requirements),
                str(layout.root / info["wheel"]),
            ],
            "pip install (network access to PyPI is needed)",
        )
        install_s = time.perf_counter() - started
        packages = _run([str(python), "-m", "pip", "freeze", "--all"], "pip freeze").stdout.splitlines()
        tf = subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True, text=True)
        tf_importable = tf.returncode == 0
        echo(f"import tensorflow in the venv: {'WORKS (it should not)' if tf_importable else 'fails, as it should'}")

        device_out = out / "device"
        threads = ",".join(str(t) for t in config.threads)
        echo(f"bench in the venv: run.py bench --data {data}")
        _run(
            [
                str(python),
                str(layout.run),
                "bench",
                "--data",
                str(data),
                "--out",
                str(device_out),
                "--threads",
                threads,
                "--runs",
                str(config.runs),
                "--warmup",
                str(config.warmup),
                "--batch-size",
                str(config.batch_size),
            ],
            "the bundle's bench in the clean venv",
        )
        device = BenchResult.read(device_out / BenchFiles.JSON)

        echo("the same models benchmarked here")
        models = [layout.root / a["path"] for a in info["artifacts"]]
        labels = layout.root / info["labels"] if info.get("labels") else None
        local = bench_run(
            models=models, data=data, config=config, out=out / "local", labels=labels, keras=False, echo=None
        ).result

    rows = []
    for d in device.rows:
        here = next((r for r in local.rows if r.name == d.name), None)
        local_accuracy = here.accuracy if here else None
        rows.append(
            {
                "name": d.name,
                "device_accuracy": d.accuracy,
                "local_accuracy": local_accuracy,
                "same_accuracy": d.accuracy is not None and d.accuracy == local_accuracy,
                "device_p50_ms": d.p50_ms,
                "local_p50_ms": here.p50_ms if here else None,
            }
        )
    result = {
        "bundle": str(bundle),
        "data": str(data),
        "venv": {"system_site_packages": False, "install_seconds": round(install_s, 1), "packages": packages},
        "tensorflow_importable": tf_importable,
        "device_machine": device.machine,
        "artifacts": rows,
        "ok": not tf_importable and bool(rows) and all(r["same_accuracy"] for r in rows),
    }
    write_json(out / "bundle_check.json", result)
    return result


@click.command()
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Test images: DIR/<class>/*.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("benchmarks/results/bundle-check"), show_default=True
)
@click.option("--threads", default="1", show_default=True, help="Comma-separated thread counts (0 = all cores).")
@click.option("--runs", type=int, default=50, show_default=True)
@click.option("--warmup", type=int, default=5, show_default=True)
def main(bundle: Path, data: Path, out: Path, threads: str, runs: int, warmup: int) -> None:
    config = BenchConfig(threads=[int(t) for t in threads.split(",")], runs=runs, warmup=warmup)
    try:
        result = check_bundle(bundle, data, out, config, echo=click.echo)
    except EdgeExportError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)

    def show(x, fmt):
        return format(x, fmt) if x is not None else "-"

    for r in result["artifacts"]:
        click.echo(
            f"{r['name']}: accuracy clean venv {show(r['device_accuracy'], '.2%')} "
            f"vs here {show(r['local_accuracy'], '.2%')} "
            f"({'same' if r['same_accuracy'] else 'DIFFERENT'}); p50 {show(r['device_p50_ms'], '.2f')} ms "
            f"vs {show(r['local_p50_ms'], '.2f')} ms"
        )
    click.echo(f"{'OK' if result['ok'] else 'FAILED'}: wrote {out / 'bundle_check.json'}")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
