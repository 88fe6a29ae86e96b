"""What proving a pixel-cache hit by content costs, next to the decode it saves.

    python benchmarks/scripts/pixel_cache_cost.py --data TEST_DIR [--size 288] [--repeats 5] [--json OUT]

On every image of ``--data`` (e.g. the 1,000 shared cats-vs-dogs test photos), in one process, each step
timed ``--repeats`` times (median kept; the steps interleaved per repeat, so load that comes and goes hits them
alike):

    decode          decode_many: what a miss costs (every photo decoded and resized to --size)
    stat key        the old key: path, size and mtime of each file (what a hit cost before the content check)
    content key     the key now: the sha256 of each file's bytes
    pixel check     the CRC-32 of the entry's pixel rows, checked when an entry is opened
    hit             decoded_pixels on a warm entry: content key + open + pixel check (what a cached bench pays)

and the content check's share of a decode: (content key + pixel check - stat key) / decode. The cache folder is
a temporary one, removed at the end.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edge_export.benchmarks.machine import describe, machine_info
from edge_export.benchmarks.testset import scan_test_folder

# the sibling scripts import from this folder at run time; mypy checks them as package modules, unresolved
sys.path.insert(0, str(Path(__file__).resolve().parent))
from script_cli import finish, json_option  # type: ignore[import-not-found]  # noqa: E402


def stat_key(files: list[Path]) -> str:
    """The key before content checks: path, size and mtime of each file."""
    digest = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        digest.update(f"\n{os.path.abspath(f)}\t{st.st_size}\t{st.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def measure(data: str, size: int, repeats: int) -> dict:
    saved = os.environ.get("EDGE_EXPORT_PIXEL_CACHE")
    try:
        return _measure(data, size, repeats)
    finally:
        if saved is None:
            os.environ.pop("EDGE_EXPORT_PIXEL_CACHE", None)
        else:
            os.environ["EDGE_EXPORT_PIXEL_CACHE"] = saved


def _measure(data: str, size: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="pixel-cache-cost-") as tmp:
        os.environ["EDGE_EXPORT_PIXEL_CACHE"] = str(Path(tmp) / "pixels")
        from edge_export.runtime import pixel_cache
        from edge_export.runtime.images import decode_many

        files = list(scan_test_folder(data).files)
        shape = (size, size)
        entry = pixel_cache.decoded_pixels(files, shape)  # the warm entry every hit below reads
        steps: dict[str, Callable[[], Any]] = {
            "decode": lambda: decode_many(files, shape),
            "stat key": lambda: stat_key(files),
            "content key": lambda: pixel_cache.cache_key(files, shape, "bilinear", None),
            "pixel check": lambda: pixel_cache.rows_crc32(entry),
            "hit": lambda: pixel_cache.decoded_pixels(files, shape),
        }
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(repeats):
            for name, step in steps.items():
                started = time.perf_counter()
                result = step()
                times[name].append(time.perf_counter() - started)
                if name == "hit" and not result.reused:
                    raise RuntimeError("the warm entry was not reused")
        ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
        pixels_mb = len(entry) * entry.row_bytes / 1e6
        files_mb = sum(f.stat().st_size for f in files) / 1e6
    return {
        "photos": len(files),
        "size": size,
        "repeats": repeats,
        "files_mb": files_mb,
        "pixels_mb": pixels_mb,
        "median_ms": ms,
        "content_check_share_of_decode": (ms["content key"] + ms["pixel check"] - ms["stat key"]) / ms["decode"],
        "hit_share_of_decode": ms["hit"] / ms["decode"],
        "machine": machine_info(),
    }


def render(r: dict) -> str:
    lines = [
        f"{r['photos']} photos ({r['files_mb']:.1f} MB of files, {r['pixels_mb']:.0f} MB of pixels at "
        f"{r['size']}x{r['size']}); {describe(r['machine'])}; median of {r['repeats']}"
    ]
    lines += [f"  {name:<12} {value:9.1f} ms" for name, value in r["median_ms"].items()]
    lines.append(
        f"content check (content key + pixel check - stat key) = {r['content_check_share_of_decode']:.1%} of a "
        f"decode; a hit = {r['hit_share_of_decode']:.1%} of a decode"
    )
    return "\n".join(lines)


@click.command()
@click.option(
    "--data", required=True, type=click.Path(exists=True, file_okay=False), help="a folder of <class>/<image> files"
)
@click.option("--size", default=288, show_default=True, help="decoded side in pixels (the default build's input)")
@click.option("--repeats", default=5, show_default=True)
@json_option
def main(data: str, size: int, repeats: int, json_out: Path | None) -> None:
    finish(lambda: measure(data, size, repeats), render, json_out)


if __name__ == "__main__":
    main()
