"""Several devices in one benchmark: each row (``BenchRow``) has a ``device`` ("local", or an SSH device
such as ``pi@raspberrypi``), and the result has ``devices`` (device -> the machine it is).

``merge_device`` adds a device's own result (made there by the same benchmark, from a bundle) to the
local one. Row names stay the model names; ``BenchRow.id`` (``name@device`` off the local machine) tells
rows apart in lists and plots.
"""

from __future__ import annotations

from dataclasses import replace

from edge_export.core.records.bench import BenchResult

# what the device cannot know about a model file: taken from the local row of the same model
FROM_LOCAL_ROW = ("format", "precision", "path", "source")


def merge_device(result: BenchResult, device: str, remote: BenchResult, min_accuracy: float | None) -> BenchResult:
    """Add ``remote`` (a bench.json made on ``device``) to ``result`` in place; returns ``result``."""
    local_rows = {r.name: r for r in result.local_rows()}
    for row in remote.rows:
        local = local_rows.get(row.name)
        row = replace(row, device=device, top1_agreement=None)  # the Keras reference runs locally only
        if local is not None:
            for key in FROM_LOCAL_ROW:
                setattr(row, key, getattr(local, key))
        row.below_min_accuracy = row.below(min_accuracy)
        result.rows.append(row)
    result.devices[device] = remote.machine
    result.device_runs[device] = {
        "threads_used": remote.settings.get("threads_used"),
        "data": remote.data.get("path"),
        "images": remote.data.get("images"),
        "created": remote.created,
        "edge_export": remote.edge_export,
        "seconds": remote.seconds,
    }
    return result


def record_device_error(result: BenchResult, device: str, message: str) -> BenchResult:
    result.device_errors[device] = message
    return result
