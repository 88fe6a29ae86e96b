"""Knowledge distillation on 2 CPU cores: a teacher's soft targets on fixed, seeded views, computed once.

Beyer et al. 2022 ("A good teacher is patient and consistent") distil by *function matching*: the student and
the teacher see the same augmented view, and the student is trained to give the teacher's output on it. Their
views are fresh every step; here, so that the student's epochs cost what the trainer's cached path costs (the
frozen base runs once per image), each training photo gets ``train.distill.views`` seeded augmented views
(a random resized crop and a horizontal flip, the same crop for both models), made once. The teacher (a
finished run folder) labels each view once, at its own input size; the student trains on the photos and the
views, with soft targets

    target = (1 - weight) * one-hot(label) + weight * teacher(view) ** (1 / temperature), renormalized

and categorical cross-entropy (= the KL divergence to the target plus a constant). Validation keeps the hard
labels, so val_loss (early stopping, the best epoch) is the same measure with or without distillation.

The views and the teacher's targets are computed in chunks, each written atomically to ``RUN/distill/`` under a
fingerprint of everything they depend on (teacher model, data, views, seed; not the student): a run killed during
the teacher's pass resumes from the last chunk, a re-run gives the same targets, and students of other sizes
reuse the teacher's pass (only their views are made again, from the same seeded crops).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_export.core.atomic import atomic_path
from edge_export.core.config import DistillConfig
from edge_export.core.errors import EdgeExportError
from edge_export.core.hashing import fingerprint
from edge_export.core.pause import pause_point
from edge_export.core.records.model_spec import ModelSpec
from edge_export.core.run_folder import RunFolder
from edge_export.core.tf_env import import_keras
from edge_export.core.untrusted import printable
from edge_export.trainer.streaming import predict

log = logging.getLogger(__name__)

CHUNK = 64  # training photos per chunk of views and teacher targets (one file each)
CROP_SCALE = (0.35, 1.0)  # fraction of the photo's area a view keeps
CROP_RATIO = (3 / 4, 4 / 3)


@dataclass
class Teacher:
    run: RunFolder
    model: Any
    image_size: int
    labels: list[str]
    model_sha256: str

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return predict(self.model, pixels, 16).astype(np.float32)


def load_teacher(path: str | Path, class_names: list[str]) -> Teacher:
    """The teacher run folder's model.keras with its labels; a clear error when it is not usable."""
    run = RunFolder(Path(path).expanduser())
    hint = "train.distill.teacher names a finished run folder (edge-export train/build --out), trained on these classes"
    if not run.root.is_dir():
        raise EdgeExportError("the distillation teacher's run folder is not there", path=run.root, hint=hint)
    record = run.verify()  # its model and labels from one train (else a clear error)
    if record.model_name != RunFolder.MODEL:
        raise EdgeExportError(
            "the distillation teacher must be a Keras run (model.keras), not an ONNX import",
            path=run.reference_model,
            hint=hint,
        )
    labels = run.read_labels()
    if labels != list(class_names):
        raise EdgeExportError(
            f"the teacher's classes ({', '.join(printable(c, 30) for c in labels[:10])}) are not the data's "
            f"({', '.join(printable(c, 30) for c in class_names[:10])})",
            path=run.labels,
            hint=hint,
        )
    spec = ModelSpec.read(run.model_spec)
    keras = import_keras()
    model = keras.models.load_model(run.model, compile=False, safe_mode=not spec.loads_external_code)
    return Teacher(run=run, model=model, image_size=spec.image_size, labels=labels, model_sha256=record.model_sha256)


def soft_targets(teacher_probs: np.ndarray, labels: np.ndarray, settings: DistillConfig) -> np.ndarray:
    """(1 - weight) * one-hot + weight * the teacher's probabilities sharpened or softened by the temperature."""
    p = np.clip(teacher_probs.astype(np.float64), 1e-12, 1.0) ** (1.0 / settings.temperature)
    p /= p.sum(axis=1, keepdims=True)
    hard = np.eye(teacher_probs.shape[1])[labels]
    return ((1.0 - settings.weight) * hard + settings.weight * p).astype(np.float32)


def smoothed_targets(targets: np.ndarray, smoothing: float) -> np.ndarray:
    """Label smoothing (``train.label_smoothing``) of N x C targets (one-hot or a teacher's): (1 - s) t + s / C."""
    classes = targets.shape[1]
    return ((1.0 - smoothing) * targets.astype(np.float64) + smoothing / classes).astype(np.float32)


def _crop_box(rng: np.random.Generator) -> tuple[float, float, float, float, bool]:
    """A random resized crop in relative coordinates (top, left, height, width) and a flip."""
    scale = rng.uniform(*CROP_SCALE)
    ratio = np.exp(rng.uniform(np.log(CROP_RATIO[0]), np.log(CROP_RATIO[1])))
    h = min(1.0, np.sqrt(scale / ratio))
    w = min(1.0, np.sqrt(scale * ratio))
    return float(rng.uniform(0, 1 - h)), float(rng.uniform(0, 1 - w)), float(h), float(w), bool(rng.random() < 0.5)


def _view(image: np.ndarray, box: tuple, size: int) -> np.ndarray:
    top, left, h, w, flip = box
    rows, cols = image.shape[:2]
    y0, x0 = int(round(top * rows)), int(round(left * cols))
    y1, x1 = max(y0 + 1, int(round((top + h) * rows))), max(x0 + 1, int(round((left + w) * cols)))
    crop = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1])).resize((size, size), Image.Resampling.BILINEAR)
    out = np.asarray(crop)
    return out[:, ::-1] if flip else out


def targets_fingerprint(
    teacher: Teacher,
    files: list[Path],
    labels: np.ndarray,
    settings: DistillConfig,
    seed: int,
    resize: str,
) -> str:
    """What the teacher's targets depend on: not the student's size, weight or temperature (applied after), so
    students of every size share one teacher pass (``edge-export tune`` shares its folder between candidates)."""
    return fingerprint(
        "distill-targets",
        2,
        teacher.model_sha256,
        [str(f) for f in files],
        labels.tolist(),
        teacher.image_size,
        settings.views,
        seed,
        resize,
    )


def distillation_data(
    teacher: Teacher,
    run: RunFolder,
    teacher_pixels: Callable[[], Any],
    student_pixels: np.ndarray,
    labels: np.ndarray,
    settings: DistillConfig,
    seed: int,
    key: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(student pixels: the photos then their views, hard labels, soft targets) for the training split.

    ``teacher_pixels()``: the training photos at the teacher's size (decoded only when a chunk is missing);
    ``key``: ``targets_fingerprint``. In ``RUN/distill/<key>/``, each chunk of photos has one file of the
    teacher's targets (``targets-N.npz``: its probabilities of the photos then of their views, the views'
    labels) and one of the views at the student's size (``views-SIZE-N.npz``); files already there are reused."""
    folder = run.root / RunFolder.DISTILL / key[:16]
    folder.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    size = student_pixels.shape[1]
    big = None
    views, view_labels, targets = [], [], []
    for start in range(0, n, CHUNK):
        chunk = start // CHUNK
        targets_path, views_path = folder / f"targets-{chunk:05d}.npz", folder / f"views-{size}-{chunk:05d}.npz"
        need_targets, need_views = not targets_path.is_file(), bool(settings.views) and not views_path.is_file()
        if need_targets or need_views:  # make only what is missing: a new student size needs only its views
            if big is None:
                big = teacher_pixels()
            stop = min(n, start + CHUNK)
            originals = np.asarray(big[start:stop])
            chunk_views_t, chunk_views_s, chunk_labels = [], [], []
            for i in range(start, stop):
                rng = np.random.default_rng([seed, i])  # each photo's views: the same whatever the chunking
                for _ in range(settings.views):
                    box = _crop_box(rng)
                    if need_targets:
                        chunk_views_t.append(_view(originals[i - start], box, teacher.image_size))
                    if need_views:
                        chunk_views_s.append(_view(originals[i - start], box, size))
                    chunk_labels.append(labels[i])
            if need_targets:
                with_originals = np.concatenate(
                    [originals, np.asarray(chunk_views_t, np.uint8).reshape(-1, *originals.shape[1:])]
                )
                probs = teacher(with_originals)
                with atomic_path(targets_path) as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, view_labels=np.asarray(chunk_labels, np.int64), probs=probs)
            if need_views:
                with atomic_path(views_path) as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, views=np.asarray(chunk_views_s, np.uint8).reshape(-1, *student_pixels.shape[1:]))
            pause_point("train.distill.chunk", chunk=chunk)  # tests: kill during the teacher's pass
        count = min(n, start + CHUNK) - start
        with np.load(targets_path) as saved:
            view_labels.append(saved["view_labels"])
            targets.append((saved["probs"][:count], saved["probs"][count:]))
        if settings.views:
            with np.load(views_path) as saved:
                views.append(saved["views"])
    teacher_originals = np.concatenate([t[0] for t in targets])
    teacher_views = np.concatenate([t[1] for t in targets]) if settings.views else teacher_originals[:0]
    all_labels = np.concatenate([labels, *view_labels]).astype(labels.dtype)
    pixels = np.concatenate([np.asarray(student_pixels), *views]) if settings.views else np.asarray(student_pixels)
    soft = soft_targets(np.concatenate([teacher_originals, teacher_views]), all_labels, settings)
    agreement = float(np.mean(teacher_originals.argmax(axis=1) == labels))
    log.info(
        "distillation: teacher %s (%d px) labels %d photos and %d views; it agrees with the labels on %.2f%% "
        "of the photos",
        teacher.run.root,
        teacher.image_size,
        n,
        len(all_labels) - n,
        100 * agreement,
    )
    return pixels, all_labels, soft


__all__ = ["Teacher", "distillation_data", "load_teacher", "smoothed_targets", "soft_targets", "targets_fingerprint"]
