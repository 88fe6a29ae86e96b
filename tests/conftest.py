"""Shared fixtures: tiny generated image folders, the shared/ folder, quiet TensorFlow."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(os.environ.get("EDGE_EXPORT_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
COLORS = {"red": 0, "green": 1, "blue": 2}


def write_image_folder(root: Path, splits: dict[str, int], classes=("blue", "red"), size=(40, 48), seed=0) -> Path:
    """root/<split>/<class>/<i>.png: noise plus a strong colour channel per class (easy to learn)."""
    rng = np.random.default_rng(seed)
    for split, per_class in splits.items():
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 90, (*size, 3), dtype=np.uint8)
                pixels[..., COLORS.get(cls, sum(map(ord, cls)) % 3)] += 160
                Image.fromarray(pixels).save(folder / f"{cls}_{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "data", {"train": 12, "validation": 6, "test": 6})


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared folder not found at {SHARED} (set EDGE_EXPORT_SHARED)")
    return SHARED
