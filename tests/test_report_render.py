"""The HTML build report renders in headless Chromium with its tables and plots (screenshot checked)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from edge_export.core.run_folder import RunFolder
from edge_export.pipeline.report import write_reports

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _png(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (400, 300), color).save(path)


@pytest.fixture
def report_dir(tmp_path):
    run = RunFolder(tmp_path / "run").create()
    _png(run.curves, (255, 0, 0))  # pure red: findable in the screenshot
    _png(run.bench_dir / "accuracy_vs_latency.png", (0, 0, 255))  # pure blue
    report = {
        "dataset": {"classes": ["cats", "dogs"], "counts": {"train": {"cats": 10, "dogs": 10}}},
        "train": {"metrics": {"validation": {"accuracy": 0.99, "loss": 0.02, "images": 20}}},
        "export": {
            "artifacts": [
                {
                    "name": "tflite-int8",
                    "status": "ok",
                    "size_bytes": 4_000_000,
                    "parity": {"accuracy": 0.99, "accuracy_drop": 0.1, "top1_agreement": 0.995, "max_abs_diff": 0.01},
                }
            ]
        },
        "bench": {
            "artifacts": [
                {
                    "name": "tflite-int8",
                    "status": "ok",
                    "size_bytes": 4_000_000,
                    "accuracy": 0.988,
                    "top1_agreement": 0.996,
                    "latency_ms": {"p50": 12.5, "p90": 13.0},
                    "fps": 80.0,
                    "threads": 1,
                }
            ]
        },
        "recommendation": {"artifact": "tflite-int8", "why": "fastest"},
        "machine": {"cpu": "test cpu"},
        "command": "edge-export build --data x",
    }
    write_reports(run, report)
    return run


def test_report_files_hold_tables_and_embedded_plots(report_dir):
    html = (report_dir.root / "report.html").read_text()
    assert html.count("<table>") >= 4 and html.count("data:image/png;base64,") == 2
    assert "tflite-int8" in html and "edge-export build --data x" in html
    md = (report_dir.root / "report.md").read_text()
    assert "| tflite-int8 |" in md and "![Learning curves](learning_curves.png)" in md


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium); .ci/run installs it")
def test_report_renders_in_headless_chromium(report_dir, tmp_path):
    shot = tmp_path / "shot.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--hide-scrollbars",
        "--window-size=1200,3000",
        f"--screenshot={shot}",
        (report_dir.root / "report.html").as_uri(),
    ]
    subprocess.run(cmd, capture_output=True, timeout=120)
    assert shot.is_file(), "Chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 50) & (pixels[..., 2] < 50)
    blue = (pixels[..., 2] > 200) & (pixels[..., 0] < 50) & (pixels[..., 1] < 50)
    assert red.sum() > 10_000 and blue.sum() > 10_000  # both embedded plots are drawn
    # table borders/header shading: grey pixels in the upper part of the page where the tables are
    grey = (abs(pixels[..., 0] - 240) < 3) & (abs(pixels[..., 1] - 240) < 3) & (abs(pixels[..., 2] - 240) < 3)
    assert grey[:1500].sum() > 1000
