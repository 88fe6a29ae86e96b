"""The candidates of a search: backbone x input size x fine-tune depth x precision (``tune`` config section), each
also distilled with ``tune.distill``; the build config of one of them, and the frontier of measured points."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from edge_export.core.config import Config, load_config
from edge_export.core.errors import EdgeExportError
from edge_export.core.records.tune import candidate_key, model_key
from edge_export.export.formats import get_format
from edge_export.trainer.backbones import get_backbone, list_backbones
from edge_export.trainer.run import recorded_config

# a precision of the search -> the export format that makes it
PRECISION_FORMATS = {"int8": "tflite-int8", "fp16": "tflite-fp16", "fp32": "tflite-fp32"}


@dataclass(frozen=True, order=True)
class Point:
    backbone: str
    image_size: int
    fine_tune_blocks: int
    precision: str
    distilled: bool = False  # trained with the teacher's soft targets (tune.distill)

    @property
    def key(self) -> str:
        return candidate_key(self.backbone, self.image_size, self.fine_tune_blocks, self.precision, self.distilled)

    @property
    def model_key(self) -> str:  # the trained model it is an export of
        return model_key(self.backbone, self.image_size, self.fine_tune_blocks, self.distilled)

    @property
    def pair(self) -> tuple[str, int]:
        return (self.backbone, self.image_size)


def search_space(config: Config) -> tuple[list[Point], list[str]]:
    """Every candidate of ``config.tune`` (registry-checked), and notes on what was left out and why.

    Backbones: ``tune.backbones``, else every registered backbone with pretrained weights that load
    offline (installed or cached) at some size of the space and ``default_search`` set (EfficientNet-Lite1/2
    are searched only when named, with a note saying so). Sizes a backbone's weights do not exist
    for (fixed ImageNet sizes), or that are not available offline, are left out of the default space.
    """
    t = config.tune
    weights = config.model.weights
    notes: list[str] = []
    for p in t.precisions:
        get_format(PRECISION_FORMATS[p])
    explicit = bool(t.backbones)
    names = (
        list(dict.fromkeys(t.backbones))
        if explicit
        else [b.name for b in list_backbones() if b.pretrained and b.default_search]
    )
    if not explicit:
        named_only = [b.name for b in list_backbones() if b.pretrained and not b.default_search]
        if named_only:
            notes.append(f"searched only when tune.backbones names them: {', '.join(named_only)}")
    points: list[Point] = []
    for name in names:
        try:
            spec = get_backbone(name)
        except EdgeExportError as exc:
            raise EdgeExportError(f"tune.backbones: {exc.message}", hint=exc.hint) from None
        if weights == "imagenet" and not explicit and not any(spec.weights_offline(z) for z in t.image_sizes):
            notes.append(
                f"{name}: weights not available offline at sizes {sorted(set(t.image_sizes))} "
                f"({spec.weights_source}); not in the space"
            )
            continue
        sizes = []
        for size in sorted(set(t.image_sizes)):
            try:
                spec.check_size(size, weights)
            except EdgeExportError:
                notes.append(f"{name} at {size}: no {weights} weights for this size (left out)")
                continue
            if weights == "imagenet" and not explicit and not spec.weights_offline(size):
                continue  # the default space: only what trains without a network
            sizes.append(size)
        if not sizes:
            continue
        for size in sizes:
            for blocks in sorted(set(t.fine_tune_blocks)):
                for precision in t.precisions:
                    for distilled in (False, True) if t.distill else (False,):
                        points.append(Point(name, size, blocks, precision, distilled))
    if not points:
        raise EdgeExportError(
            "the tune search space is empty",
            hint="set tune.backbones (see `edge-export backbones`) and tune.image_sizes"
            + (": no backbone's weights are available offline" if not explicit else ""),
        )
    return points, notes


def candidate_config(
    config: Config,
    backbone: str,
    size: int,
    blocks: int,
    precisions: list[str] | None = None,
    teacher: str | None = None,
) -> Config:
    """The build config of one trained model of the search (``precisions``: the export formats to make;
    ``teacher``: the run folder a distilled candidate learns from, else none)."""
    c = copy.deepcopy(config)
    c.model.backbone, c.model.image_size = backbone, size
    c.train.distill.teacher = teacher
    c.train.fine_tune.enabled = blocks > 0
    if blocks > 0:
        c.train.fine_tune.unfreeze_blocks, c.train.fine_tune.unfreeze_layers = blocks, None
    if precisions:
        c.export.formats = [PRECISION_FORMATS[p] for p in precisions]
    c.build.stages = ["train", "export"]
    c = recorded_config(c)  # data paths absolute: the run folder (and chosen.yaml) work from anywhere
    return load_config(c)  # validated again


def pareto(items: list[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, accuracy) points no other point beats on both (faster-or-equal and more accurate)."""
    front = []
    for i, (lat, acc) in enumerate(items):
        if not any((l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc) for j, (l2, a2) in enumerate(items) if j != i):
            front.append(i)
    return front
