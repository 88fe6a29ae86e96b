#!/usr/bin/env bash
# aarch64_check.sh: does the TF-free runtime install and classify correctly on arm64 Linux
# (the CPU of Raspberry Pi 4/5 and Jetson)? On an x86-64 host this runs an arm64 Debian root
# under qemu-user emulation; on an arm64 host the same steps run natively.
#
# Usage (as root, from anywhere):
#     benchmarks/scripts/aarch64_check.sh [ROOT] 2>&1 | tee aarch64.log
#
#   ROOT  where the arm64 Debian root is made: the argument, else $AARCH64_ROOT, else
#         "aarch64-root" next to the repository (../aarch64-root: outside the repo; never commit
#         it). An existing root is reused, so a second run only reinstalls and re-checks.
#
# What it does:
#   1. apt-get installs the host tools if missing: debootstrap, qemu-user-static, binfmt-support
#      (and proot, the fallback when binfmt_misc cannot be used).
#   2. Registers qemu-aarch64 with binfmt_misc (mounting /proc/sys/fs/binfmt_misc if needed) so
#      that `chroot ROOT` runs arm64 binaries; if that is impossible, uses `proot -q qemu-aarch64-static`.
#   3. debootstrap --arch=arm64 --variant=minbase bookworm (python3 3.11, python3-venv,
#      python3-pip), in two stages (--foreign, then --second-stage inside the emulated root).
#      The host's local CA certificates (/usr/local/share/ca-certificates, e.g. of a TLS-inspecting
#      proxy) are copied into the root so that pip there trusts what the host trusts.
#   4. Builds a wheel of edge-export from a copy of the working tree (tracked and untracked,
#      not ignored files: nothing is written into the repo) with `pip wheel --no-deps`.
#   5. In the root: a venv at /opt/edge-export/venv, `pip install WHEEL[tflite,onnx,video]` with Debian's
#      pip from PyPI (ai-edge-litert, onnxruntime and opencv-python-headless aarch64 manylinux wheels, numpy,
#      Pillow, ...): the models are decoded by OpenCV there, and a video made there is classified frame by frame.
#   6. Checks there: uname -m, Debian/python/package versions, that `import tensorflow` fails,
#      `edge-export predict` on the reference models (../shared/reference-models) for cat.bmp and
#      grace_hopper.bmp, and the same through the Python API (Classifier.load) against the
#      expected top-1 labels, with no tensorflow module loaded; once per emulated CPU (below).
#      If the host Python has tf2onnx, the reference MobileNet v2 is also converted to ONNX on the
#      host and checked with onnxruntime in the root. If the host Python can import
#      edge_export.runtime and ai_edge_litert, the scores are compared with the host's (x86-64).
#
# Emulated CPUs ($AARCH64_CPUS, default "cortex-a72 cortex-a76 cortex-a57"): Raspberry Pi 4,
#   Raspberry Pi 5, Jetson Nano/TX2. Each runs with QEMU_CPU=<cpu> and, because qemu-user shows the
#   guest the host's x86 /proc/cpuinfo, with a generated /proc/cpuinfo for that core bind-mounted
#   in the root (one entry per host CPU, as in /sys/devices/system/cpu/possible). Without that, the
#   cpuinfo library in LiteRT's XNNPACK either segfaults (x86 /proc/cpuinfo plus /sys: seen in
#   allocate_tensors) or gives up (no /sys), and LiteRT silently runs its non-XNNPACK kernels:
#   not the code path of a real device. /proc, /sys and the cpuinfo file are unmounted on exit.
#
# Needs: root (debootstrap, chroot, mount, binfmt_misc); a Debian/Ubuntu host (apt-get); the
#   Debian mirror and PyPI reachable; about 600 MB of disk for the root.
# Time (2 x86-64 cores, binfmt): about 10 min from scratch (first stage 20 s, emulated second
#   stage 6.5 min, CA update 0.5 min, emulated pip install 1.5 min, checks 20 s per CPU); about
#   1.5 min when the root exists. Latency under emulation means nothing; it is not measured.
# The proot fallback (AARCH64_MODE=proot) was checked on an existing root only (install and checks
#   pass); its debootstrap second stage is untested.
# Prints: each step with its elapsed time, the facts (uname -m, CPU features, versions, pip freeze),
#   the predictions, a comparison table, and a last line "AARCH64 CHECK: PASS" (exit 0) or
#   "AARCH64 CHECK: FAIL ..." (exit 1). A case passes when the expected label has the top score
#   (uint8 scores can tie; a tie is printed as such).
#
# Environment (all optional):
#   AARCH64_ROOT      the root (see above)
#   AARCH64_CPUS      emulated CPUs, from: cortex-a72 cortex-a76 cortex-a57 neoverse-n1
#   AARCH64_SUITE     Debian suite, default bookworm
#   AARCH64_MIRROR    default http://deb.debian.org/debian
#   AARCH64_MODE      auto (default) | binfmt | proot | native
#   AARCH64_PIP_ARGS  extra arguments for the pip install in the root, e.g. "ai-edge-litert==2.3.0"
#   AARCH64_ONNX      auto (default: convert if the host has tf2onnx) | 0 (skip the ONNX model)
#   AARCH64_SKIP_APT  1: do not apt-get install host tools
#   REFERENCE_MODELS  default ../shared/reference-models next to the repository
#   HOST_PYTHON       host Python for the wheel, tf2onnx and the x86 comparison, default python3
#   AARCH64_NICE      niceness of the heavy steps, default 10
#
# To remove the root: rm -rf ROOT, after the script has exited (`mount | grep ROOT` must print nothing).

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
ROOT=${1:-${AARCH64_ROOT:-$(dirname "$REPO")/aarch64-root}}
read -r -a CPUS <<<"${AARCH64_CPUS:-cortex-a72 cortex-a76 cortex-a57}"
SUITE=${AARCH64_SUITE:-bookworm}
MIRROR=${AARCH64_MIRROR:-http://deb.debian.org/debian}
MODE=${AARCH64_MODE:-auto}
PIP_ARGS=${AARCH64_PIP_ARGS:-}
ONNX=${AARCH64_ONNX:-auto}
MODELS=${REFERENCE_MODELS:-$(dirname "$REPO")/shared/reference-models}
HOST_PYTHON=${HOST_PYTHON:-python3}
NICE=${AARCH64_NICE:-10}
GUEST_DIR=/opt/edge-export            # inside the root
GUEST_PATH=/opt/edge-export/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
GUEST_CPU=                            # QEMU_CPU for the guest (empty: qemu's default, "max")
CPUINFO_FILE=                         # the generated /proc/cpuinfo, when one is in place

START=$SECONDS
STEP=start
step() { STEP=$*; printf '\n=== [%4ds] %s\n' "$((SECONDS - START))" "$*"; }
die() { echo "AARCH64 CHECK: FAIL ($*)"; FAIL_SHOWN=1; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and mount need it)"
[ -f "$MODELS/mobilenet_v2_1.0_224_quant.tflite" ] || die "reference models not found in $MODELS"
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd -P)
case "$ROOT/" in
    "$REPO"/*) die "the root $ROOT is inside the repository $REPO; choose another place" ;;
    /) die "refusing ROOT=/" ;;
esac

# core -> "implementer part variant revision|Features|what has it" (as the Linux kernel prints them)
cpu_profile() {
    case "$1" in
        cortex-a72) echo "0x41 0xd08 0x0 3|fp asimd evtstrm crc32 cpuid|Raspberry Pi 4 (BCM2711)" ;;
        cortex-a76) echo "0x41 0xd0b 0x4 1|fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp|Raspberry Pi 5 (BCM2712)" ;;
        cortex-a57) echo "0x41 0xd07 0x1 1|fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid|Jetson Nano / TX1 / TX2 (Tegra X1, X2)" ;;
        neoverse-n1) echo "0x41 0xd0c 0x3 1|fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs|arm64 servers (A76-class; nearest qemu 7.2 has to Jetson Orin's A78AE)" ;;
        *) return 1 ;;
    esac
}
for cpu in "${CPUS[@]}"; do cpu_profile "$cpu" >/dev/null || die "unknown CPU $cpu in AARCH64_CPUS"; done

step "host"
date -u
echo "host: $(uname -srm); $(sed -n 's/^PRETTY_NAME=//p' /etc/os-release | tr -d '"'); $(nproc) CPUs"
echo "repo: $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')$(
    n=$(git -C "$REPO" status --porcelain 2>/dev/null | wc -l); [ "$n" -gt 0 ] && echo ", plus $n uncommitted changed/new paths"))"
echo "root: $ROOT   suite: $SUITE   mirror: $MIRROR   models: $MODELS"

# ---------------------------------------------------------------- 1. host tools
HOST_ARCH=$(uname -m)
if [ "$MODE" = auto ] && [ "$HOST_ARCH" = aarch64 ]; then MODE=native; fi
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ "$MODE" != native ]; then
    [ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
    command -v update-binfmts >/dev/null || need+=(binfmt-support)
    command -v proot >/dev/null || need+=(proot)
fi
if [ ${#need[@]} -gt 0 ]; then
    step "apt-get install ${need[*]}"
    [ "${AARCH64_SKIP_APT:-0}" = 1 ] && die "missing host tools: ${need[*]} (AARCH64_SKIP_APT=1)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"; then
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
    fi
fi
echo "debootstrap $(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || echo '?')," \
     "qemu-user-static $(dpkg-query -W -f='${Version}' qemu-user-static 2>/dev/null || echo '?')"

# ---------------------------------------------------------------- 2. emulation
binfmt_ok() {
    local entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
    [ -r "$entry" ] && head -n1 "$entry" | grep -qx enabled
}
if [ "$MODE" = auto ] || [ "$MODE" = binfmt ]; then
    step "binfmt_misc"
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>&1 || echo "(cannot mount binfmt_misc)"
    fi
    if [ -e /proc/sys/fs/binfmt_misc/register ] && ! binfmt_ok; then
        update-binfmts --enable qemu-aarch64 2>&1 || echo "(update-binfmts --enable qemu-aarch64 failed)"
    fi
    if binfmt_ok; then
        sed 's/^/  /' /proc/sys/fs/binfmt_misc/qemu-aarch64
        MODE=binfmt
    elif [ "$MODE" = binfmt ]; then
        die "qemu-aarch64 is not registered with binfmt_misc"
    else
        echo "binfmt_misc unusable here: falling back to proot -q qemu-aarch64-static"
        MODE=proot
    fi
fi
echo "mode: $MODE"

MOUNTED=()
cleanup() {
    local rc=$? i
    if [ "$rc" != 0 ] && [ -z "${FAIL_SHOWN:-}" ]; then
        echo "AARCH64 CHECK: FAIL (exit status $rc in step: $STEP)"
    fi
    if [ -n "$CPUINFO_FILE" ] && [ "$MODE" != proot ]; then umount "$ROOT/proc/cpuinfo" 2>/dev/null || true; fi
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" || true; done
    MOUNTED=()
    [ -n "${SRC_COPY:-}" ] && rm -rf "$SRC_COPY"
    return 0
}
trap cleanup EXIT
mount_guest() {  # /proc and /sys in the root for chroot (proot binds them itself)
    [ "$MODE" = proot ] && return 0
    local fs type
    for fs in proc sys; do
        type=proc && [ "$fs" = sys ] && type=sysfs
        mkdir -p "$ROOT/$fs"
        if ! mountpoint -q "$ROOT/$fs"; then
            mount -t "$type" "$fs" "$ROOT/$fs"
            MOUNTED+=("$ROOT/$fs")
        fi
    done
}
# Emulate CPU $1: QEMU_CPU plus a /proc/cpuinfo for that core (see the header). Native: no-op.
select_cpu() {
    local cpu=$1 ids=() r a b i midr features
    [ "$MODE" = native ] && return 0
    IFS='|' read -r midr features _ <<<"$(cpu_profile "$cpu")"
    read -r -a m <<<"$midr"
    local possible
    possible=$(cat /sys/devices/system/cpu/possible 2>/dev/null || echo "0-$(($(nproc --all) - 1))")
    IFS=, read -r -a ranges <<<"$possible"
    for r in "${ranges[@]}"; do
        a=${r%-*} b=${r#*-}
        for ((i = a; i <= b; i++)); do ids+=("$i"); done
    done
    CPUINFO_FILE=$ROOT$GUEST_DIR/cpuinfo-$cpu
    : >"$CPUINFO_FILE"
    for i in "${ids[@]}"; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: %s\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' \
            "$i" "$features" "${m[0]}" "${m[2]}" "${m[1]}" "${m[3]}" >>"$CPUINFO_FILE"
    done
    if [ "$MODE" = binfmt ]; then
        umount "$ROOT/proc/cpuinfo" 2>/dev/null || true
        mount --bind "$CPUINFO_FILE" "$ROOT/proc/cpuinfo"
    fi
    GUEST_CPU=$cpu
}
# run a command inside the root, with a clean environment (no host PIP_* or PATH)
guest() {
    local envv=(env -i HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=dumb PATH="$GUEST_PATH" PYTHONDONTWRITEBYTECODE=1
                PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1)
    [ -n "$GUEST_CPU" ] && envv+=(QEMU_CPU="$GUEST_CPU")
    case "$MODE" in
        binfmt | native) nice -n "$NICE" "${envv[@]}" /usr/sbin/chroot "$ROOT" "$@" ;;
        proot)
            local binds=(-b /proc -b /dev)
            [ -n "$CPUINFO_FILE" ] && binds+=(-b /sys -b "$CPUINFO_FILE:/proc/cpuinfo")
            # proot 5.1 does not translate faccessat2 (glibc's access()), so os.access() in the
            # root looks at host paths: the models are also bound at their host path for click.
            [ -d "${WORK:-}/models" ] && binds+=(-b "$WORK/models:$WORK/models")
            nice -n "$NICE" "${envv[@]}" "$(command -v proot)" -0 -q /usr/bin/qemu-aarch64-static \
                -r "$ROOT" "${binds[@]}" -w / "$@" ;;
    esac
}

# ---------------------------------------------------------------- 3. debootstrap
if [ -x "$ROOT/usr/bin/python3" ] && [ ! -e "$ROOT/debootstrap" ]; then  # debootstrap removes /debootstrap when done
    step "debootstrap: reusing the complete root $ROOT"
else
    INCLUDE=python3,python3-venv,python3-pip,ca-certificates
    if [ ! -x "$ROOT/debootstrap/debootstrap" ]; then
        if [ "$MODE" = native ]; then
            step "debootstrap (native) $SUITE arm64"
            nice -n "$NICE" debootstrap --arch=arm64 --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOT" "$MIRROR"
        else
            step "debootstrap first stage (download, unpack) $SUITE arm64"
            nice -n "$NICE" debootstrap --arch=arm64 --foreign --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOT" "$MIRROR"
        fi
    fi
    if [ -x "$ROOT/debootstrap/debootstrap" ]; then
        step "debootstrap second stage (emulated, $MODE)"
        guest /debootstrap/debootstrap --second-stage ||
            die "second stage failed (see $ROOT/debootstrap/debootstrap.log); delete $ROOT and rerun"
    fi
    [ -x "$ROOT/usr/bin/python3" ] || die "no python3 in the root after debootstrap"
fi
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true   # DNS for pip in the root
WORK=$ROOT$GUEST_DIR
mkdir -p "$WORK/wheels" "$WORK/models"
mount_guest
select_cpu "${CPUS[0]}"
# The host's local CAs (e.g. of a TLS-inspecting proxy in front of PyPI), so that pip in the root
# trusts what the host trusts. Public certificates only; skipped when the host has none.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    step "local CA certificates of the host -> the root"
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    changed=0
    for crt in /usr/local/share/ca-certificates/*.crt; do
        dest=$ROOT/usr/local/share/ca-certificates/$(basename "$crt")
        cmp -s "$crt" "$dest" || { cp "$crt" "$dest"; changed=1; }
    done
    ls "$ROOT/usr/local/share/ca-certificates"
    if [ "$changed" = 1 ]; then guest update-ca-certificates; fi
fi

# ---------------------------------------------------------------- 4. wheel
step "wheel of edge-export from $REPO"
rm -f "$WORK"/wheels/edge_export-*.whl
SRC_COPY=$(mktemp -d /tmp/edge-export-src.XXXXXX)
if git -C "$REPO" rev-parse >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard) |
        while IFS= read -r -d '' f; do
            if [ -f "$REPO/$f" ]; then mkdir -p "$SRC_COPY/$(dirname "$f")" && cp -p "$REPO/$f" "$SRC_COPY/$f"; fi
        done
else
    cp -a "$REPO/." "$SRC_COPY/" && rm -rf "$SRC_COPY"/{build,dist,.git} "$SRC_COPY"/*.egg-info
fi
if "$HOST_PYTHON" -m pip --version >/dev/null 2>&1; then
    nice -n "$NICE" "$HOST_PYTHON" -m pip wheel -q --no-deps "$SRC_COPY" -w "$WORK/wheels"
else  # no pip on the host: build it inside the root instead
    rm -rf "$WORK/src" && cp -a "$SRC_COPY" "$WORK/src"
    guest python3 -m venv /opt/edge-export/build-venv
    guest /opt/edge-export/build-venv/bin/pip wheel -q --no-deps /opt/edge-export/src -w /opt/edge-export/wheels
fi
WHEEL=$(cd "$WORK/wheels" && ls edge_export-*.whl)
echo "$WHEEL ($(stat -c %s "$WORK/wheels/$WHEEL") bytes)"

# reference models and images, copied into the root
for f in mobilenet_v2_1.0_224_quant.tflite mobilenet_v1_0.25_128_quant.tflite imagenet_labels.txt cat.bmp grace_hopper.bmp; do
    [ -f "$MODELS/$f" ] && cp "$MODELS/$f" "$WORK/models/"
done
(cd "$WORK/models" && sha256sum ./*.tflite | sed 's/^/  /')

# ---------------------------------------------------------------- optional ONNX model (host conversion)
ONNX_MODEL=$WORK/models/mobilenet_v2_1.0_224_quant.onnx
if [ "$ONNX" != 0 ] && [ ! -s "$ONNX_MODEL" ]; then
    if "$HOST_PYTHON" -c "import tf2onnx" >/dev/null 2>&1; then
        step "convert mobilenet_v2_1.0_224_quant.tflite to ONNX on the host (tf2onnx --tflite)"
        if nice -n "$NICE" "$HOST_PYTHON" -m tf2onnx.convert --tflite "$WORK/models/mobilenet_v2_1.0_224_quant.tflite" \
            --output "$ONNX_MODEL.partial" --opset 13 >"$WORK/models/tf2onnx.log" 2>&1; then
            mv "$ONNX_MODEL.partial" "$ONNX_MODEL"
            tail -n 2 "$WORK/models/tf2onnx.log" | sed 's/^/  /'
        else
            tail -n 20 "$WORK/models/tf2onnx.log"
            echo "(ONNX conversion failed: the ONNX model check is skipped)"
            rm -f "$ONNX_MODEL.partial"
        fi
    else
        echo "(host $HOST_PYTHON has no tf2onnx: the ONNX model check is skipped; onnxruntime is still imported)"
    fi
fi
[ "$ONNX" = 0 ] && rm -f "$ONNX_MODEL"

# ---------------------------------------------------------------- 5. install in the root
step "venv + pip install ${WHEEL}[tflite,onnx,video] in the root (emulated ${GUEST_CPU:-native})"
[ -x "$WORK/venv/bin/python" ] || guest python3 -m venv /opt/edge-export/venv
guest python -m pip --version   # Debian's pip (23.0.1 in bookworm), as on Raspberry Pi OS: not upgraded
guest python -m pip install --progress-bar off --force-reinstall --no-deps "/opt/edge-export/wheels/$WHEEL"
# shellcheck disable=SC2086
guest python -m pip install --progress-bar off "/opt/edge-export/wheels/${WHEEL}[tflite,onnx,video]" $PIP_ARGS
guest python -m pip check

# ---------------------------------------------------------------- 6. checks
cat >"$WORK/check.py" <<'PY'
"""Runs inside the arm64 root (and, with --reference, on the host for comparison)."""
import ctypes, json, os, platform, sys
from importlib import metadata

reference = "--reference" in sys.argv
M = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
LABELS = os.path.join(M, "imagenet_labels.txt")
CASES = [  # model, image, expected top-1 (shared/README.md)
    ("mobilenet_v2_1.0_224_quant.tflite", "cat.bmp", "Egyptian cat"),
    ("mobilenet_v2_1.0_224_quant.tflite", "grace_hopper.bmp", "military uniform"),
    ("mobilenet_v1_0.25_128_quant.tflite", "cat.bmp", "Egyptian cat"),
    ("mobilenet_v1_0.25_128_quant.tflite", "grace_hopper.bmp", "academic gown, academic robe, judge's robe"),
    ("mobilenet_v2_1.0_224_quant.onnx", "cat.bmp", "Egyptian cat"),
    ("mobilenet_v2_1.0_224_quant.onnx", "grace_hopper.bmp", "military uniform"),
]
HWCAP = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc "
         "dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg").split()
failures = []
if not reference:
    print("machine:", platform.machine(), "| python:", sys.version.split()[0], "| libc:", "-".join(platform.libc_ver()))
    if platform.machine() == "aarch64":
        bits = ctypes.CDLL(None).getauxval
        bits.restype, bits.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
        hwcap = bits(16)  # AT_HWCAP
        print("AT_HWCAP:", " ".join(n for i, n in enumerate(HWCAP) if hwcap >> i & 1))
        try:
            with open("/proc/cpuinfo") as f:
                parts = sorted({l.split(":")[1].strip() for l in f if l.startswith("CPU part")})
            print("/proc/cpuinfo: CPU part", ", ".join(parts) or "(none: not an arm64 cpuinfo)")
        except OSError as exc:
            print("/proc/cpuinfo:", exc)
    for dist in ("edge-export", "ai-edge-litert", "onnxruntime", "opencv-python-headless", "numpy", "Pillow", "click", "PyYAML"):
        try:
            print(f"  {dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            print(f"  {dist}: not installed")
    base = [r for r in metadata.requires("edge-export") or [] if "extra ==" not in r]
    print("  edge-export base requirements:", ", ".join(base))
    try:
        import tensorflow  # noqa: F401
        failures.append("import tensorflow succeeded")
        print("import tensorflow: SUCCEEDED (unexpected)")
    except ImportError as exc:
        print(f"import tensorflow: {type(exc).__name__}: {exc}")
    sys.modules.pop("tensorflow", None)

from edge_export.runtime.classifier import Classifier

results = {}
for model, image, expected in CASES:
    path = os.path.join(M, model)
    if not os.path.exists(path):
        continue
    try:
        clf = Classifier.load(path, labels=LABELS)
    except Exception:
        if reference:  # e.g. no onnxruntime on the host
            continue
        raise
    top = clf.predict(os.path.join(M, image), top_k=5)[0]
    best = top[0].probability
    tied = [p.label for p in top if p.probability == best]
    ok = expected in tied
    note = "" if tied == [expected] else f" TIE at the top score: {tied}" if ok else ""
    if not ok:
        failures.append(f"{model} {image}: top-1 {top[0].label!r}, expected {expected!r}")
    results[f"{model} {image}"] = [[p.index, round(p.probability, 6)] for p in top]
    if not reference:
        extra = f", providers={clf.backend.providers}" if hasattr(clf.backend, "providers") else ""
        print(f"{'OK  ' if ok else 'FAIL'} {model} {image} [backend={clf.backend.name}{extra}, input {clf.input_size}, "
              f"decoder {clf.preprocessing.decoder}]"
              f": top-1 {top[0].label!r} {top[0].probability:.4f} (expected {expected!r}){note}")
        for p in top[1:]:
            print(f"       {p.index:4d} {p.label!r} {p.probability:.4f}")
if not reference:  # a video (OpenCV's writer and FFmpeg reader of the arm64 wheel), classified frame by frame
    try:
        import cv2
        from edge_export.runtime.frames import StreamSummary, classify_frames

        video = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cat.avi")
        writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
        frame = cv2.resize(cv2.imread(os.path.join(M, "cat.bmp")), (320, 240), interpolation=cv2.INTER_AREA)
        for _ in range(10):
            writer.write(frame)
        writer.release()
        clf = Classifier.load(os.path.join(M, "mobilenet_v2_1.0_224_quant.tflite"), labels=LABELS)
        summary = StreamSummary(video)
        labels = [r.predictions[0].label for r in classify_frames(clf, video, top_k=1, summary=summary)]
        ok = len(labels) == 10 and set(labels) == {"Egyptian cat"}
        print(f"{'OK  ' if ok else 'FAIL'} video of cat.bmp, 10 frames: {summary.text()}; top-1 {sorted(set(labels))}")
        if not ok:
            failures.append(f"video: {labels}")
    except ImportError as exc:
        failures.append(f"video: {exc}")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "torch"))
    print("heavy modules loaded:", loaded or "none")
    if loaded:
        failures.append(f"loaded {loaded}")
    try:
        import onnxruntime
        print("onnxruntime providers:", onnxruntime.get_available_providers())
    except ImportError as exc:
        failures.append(f"import onnxruntime: {exc}")
print("RESULTS " + json.dumps(results, sort_keys=True))
for f in failures:
    print("FAILURE:", f)
sys.exit(1 if failures else 0)
PY

step "facts in the root"
guest uname -a
echo "uname -m: $(guest uname -m)"
echo "debian: $(cat "$ROOT/etc/debian_version")"
guest python --version
guest python -m pip --version
guest python -m pip freeze --all

status=0
labels_of=()
for cpu in "${CPUS[@]}"; do
    [ "$MODE" = native ] && cpu=native
    select_cpu "$cpu"
    what=native && [ "$cpu" != native ] && what="QEMU_CPU=$cpu, $(cpu_profile "$cpu" | cut -d'|' -f3)"
    step "edge-export predict (CLI) in the root: $what"
    d=/opt/edge-export/models && [ "$MODE" = proot ] && d=$WORK/models   # see guest()
    for model in mobilenet_v2_1.0_224_quant.tflite mobilenet_v1_0.25_128_quant.tflite mobilenet_v2_1.0_224_quant.onnx; do
        [ -f "$WORK/models/$model" ] || continue
        echo "\$ edge-export predict $d/$model $d/cat.bmp $d/grace_hopper.bmp --labels $d/imagenet_labels.txt"
        guest edge-export predict "$d/$model" "$d/cat.bmp" "$d/grace_hopper.bmp" --labels "$d/imagenet_labels.txt" || status=1
    done
    step "Python API check in the root (Classifier.load, expected top-1, no tensorflow): $what"
    guest python /opt/edge-export/check.py | tee "$WORK/check-$cpu.out" || status=1
    labels_of+=("$cpu")
    [ "$cpu" = native ] && break
done

# ---------------------------------------------------------------- comparison (informational)
step "scores side by side (x86-64 host: the same check with the host's $HOST_PYTHON, where it can)"
host_json={}
if [ "$MODE" != native ] && "$HOST_PYTHON" -c "import edge_export.runtime, ai_edge_litert" >/dev/null 2>&1; then
    host_json=$(cd /tmp; nice -n "$NICE" "$HOST_PYTHON" "$WORK/check.py" --reference 2>/dev/null | sed -n 's/^RESULTS //p' || true)
    host_json=${host_json:-\{\}}
fi
args=()
for cpu in "${labels_of[@]}"; do args+=("$cpu" "$(sed -n 's/^RESULTS //p' "$WORK/check-$cpu.out")"); done
"$HOST_PYTHON" - "$HOST_ARCH" "$host_json" "${args[@]}" <<'PY' || echo "(comparison failed)"
import json, sys
runs = [(sys.argv[1] + " host", json.loads(sys.argv[2] or "{}"))]
runs += [(sys.argv[i], json.loads(sys.argv[i + 1] or "{}")) for i in range(3, len(sys.argv), 2)]
runs = [(name, res) for name, res in runs if res]
keys = sorted({k for _, res in runs for k in res})
print("top-1 class index and score per case (uint8 models: scores are multiples of 1/256):")
print(f"  {'case':52s}" + "".join(f"{name:>18s}" for name, _ in runs))
for k in keys:
    cells = [f"{res[k][0][0]} {res[k][0][1]:.4f}" if k in res else "-" for _, res in runs]
    print(f"  {k:52s}" + "".join(f"{c:>18s}" for c in cells))
if len(runs) > 1:
    print("largest |score difference| over the top-5 classes, against " + runs[0][0] + ":")
    for name, res in runs[1:]:
        diffs = []
        for k in keys:
            if k in res and k in runs[0][1]:
                a, b = dict(map(tuple, res[k])), dict(map(tuple, runs[0][1][k]))
                diffs += [abs(a[i] - b[i]) for i in a.keys() & b.keys()]
        print(f"  {name}: {max(diffs):.4f}" if diffs else f"  {name}: -")
PY

step "done in $((SECONDS - START)) s"
if [ "$status" = 0 ]; then
    echo "AARCH64 CHECK: PASS (uname -m $(guest uname -m), $(guest python --version 2>&1), $WHEEL, CPUs: ${labels_of[*]})"
else
    die "see the FAIL/FAILURE lines above"
fi
