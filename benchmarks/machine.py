"""What the numbers were measured on: CPU, cores, memory, OS, Python and library versions.

Reads /proc and package metadata only; imports none of the measured libraries (no TensorFlow).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from edge_export.core.untrusted import printable
from edge_export.core.versions import installed_versions

LIBRARIES = ("numpy", "Pillow", "ai-edge-litert", "tflite-runtime", "onnxruntime", "tensorflow", "keras")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_threads(requested: list[int]) -> list[tuple[int, int]]:
    """(requested, used) per thread count, 0 -> all usable cores; repeats after resolving dropped."""
    out, seen = [], set()
    cores = usable_cores()
    for r in requested:
        used = cores if r == 0 else int(r)
        if used not in seen:
            seen.add(used)
            out.append((int(r), used))
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def memory_total_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def library_versions() -> dict[str, str | None]:
    return installed_versions(LIBRARIES)


def machine_info() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_mb": memory_total_mb(),
        "arch": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
    }


def describe(info: dict) -> str:
    """One line for screens and reports."""
    libs = info.get("libraries", {})
    shown = ", ".join(
        f"{k} {v}" for k, v in libs.items() if v and k in ("numpy", "ai-edge-litert", "onnxruntime", "tensorflow")
    )
    text = f"{info['cpu']}, {info['usable_cores']}/{info['cores']} cores, {info['os']}, Python {info['python']}" + (
        f"; {shown}" if shown else ""
    )
    return printable(text, 400)  # a device's own words (CPU, OS, versions) never reach a terminal raw
