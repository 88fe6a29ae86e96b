"""The configuration: one typed, validated object per stage, loaded from YAML plus overrides in one place.

Precedence: defaults < config file < ``key=value`` overrides and CLI flags. Unknown keys and bad values
are errors before any work starts. Every value remembers where it came from (``sources``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from edge_export.core.errors import EdgeExportError
from edge_export.core.untrusted import DEFAULT_MAX_IMAGE_PIXELS, read_yaml

_T = TypeVar("_T")

MAX_SEED = 2**32 - 1  # NumPy's and TensorFlow's seeds are unsigned 32-bit


@dataclass
class DataConfig:
    path: str = "cats_vs_dogs"  # a folder, or the name of a known dataset
    validation_split: float = 0.2  # used only when the data has no validation/ folder
    # images larger than this (width x height, read from the header) are refused before decoding, like any
    # unreadable image (a decompression bomb: a 109 KB PNG can declare 30000 x 30000 pixels)
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    # a folder of class folders with no train/ (DIR/<class>/*.jpg) is split by the tool, per class, seeded
    # (train.seed): fractions for train, validation, test; the split is recorded in the run's dataset.json
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])

    def validate(self) -> None:
        _check(0.0 < self.validation_split < 1.0, "data.validation_split", "a fraction between 0 and 1")
        _check(
            len(self.split) == 3
            and all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 <= f < 1 for f in self.split)
            and self.split[0] > 0
            and self.split[1] > 0
            and abs(sum(self.split) - 1.0) < 1e-6,
            "data.split",
            "three fractions train,validation,test that add up to 1 (train and validation > 0)",
        )
        _check(self.max_image_pixels >= 1, "data.max_image_pixels", "a positive number of pixels (width x height)")


@dataclass
class ModelConfig:
    backbone: str = "efficientnet_lite0"
    image_size: int | None = None  # None: the backbone's default
    weights: str = "imagenet"  # "imagenet", "none", or a path to a weights file
    dropout: float = 0.2
    # how photos are resized to the input, in training and (recorded in every artifact) at run time: bilinear
    # (filtered when shrinking); nearest costs a tenth of it per photo (README, "Runtime overhead")
    resize: Literal["bilinear", "bicubic", "nearest", "area"] = "bilinear"
    # which library decodes and resizes photos, in training and (recorded in every artifact) at run time: opencv
    # (libjpeg-turbo at a reduced DCT scale, cv2.resize; the train and video extras install it) or pillow (the
    # runtime's base install; every artifact made before this setting)
    decoder: Literal["pillow", "opencv"] = "opencv"
    # Bring your own model (export/user_model.py): a Keras 3 .keras, a legacy .h5 or a SavedModel folder that
    # replaces training; empty: train one. What it expects and what it outputs are inferred and checked on
    # validation photos where "auto"; name them where the check cannot tell.
    source: str = ""
    input_scale: Literal["auto", "0-255", "0-1", "-1-1", "imagenet"] = "auto"
    output: Literal["auto", "softmax", "logits", "sigmoid", "sigmoid-logit"] = "auto"
    labels: str = ""  # a labels file (one class name a line, in the model's output order); empty: the data's classes
    custom_objects: list[str] = field(default_factory=list)  # Python modules to import before loading (they register)

    def validate(self) -> None:
        _check(0.0 <= self.dropout < 1.0, "model.dropout", "a fraction in [0, 1)")
        _check(
            all(isinstance(m, str) and m.strip() for m in self.custom_objects),
            "model.custom_objects",
            "a list of Python module names or .py files that register the model's custom layers",
        )
        _check(self.image_size is None or 32 <= self.image_size <= 1024, "model.image_size", "32..1024")


@dataclass
class FeatureExtractionConfig:
    enabled: bool = True
    mode: Literal["cached", "augmented"] = "cached"
    epochs: int = 30
    learning_rate: float = 1e-3
    patience: int = 5

    def validate(self) -> None:
        _check(1 <= self.epochs <= MAX_EPOCHS, "train.feature_extraction.epochs", f"1..{MAX_EPOCHS}")
        _check(self.learning_rate > 0, "train.feature_extraction.learning_rate", "> 0")


@dataclass
class FineTuneConfig:
    enabled: bool = True
    unfreeze_blocks: int = 3  # top blocks of the base to train (the backbone defines its blocks)
    unfreeze_layers: int | None = None  # alternatively, the top N layers of the base
    epochs: int = 10
    learning_rate: float = 1e-5
    patience: int = 3
    augment: bool = False  # False: the frozen bottom of the base runs once and is cached

    def validate(self) -> None:
        _check(self.unfreeze_blocks >= 1, "train.fine_tune.unfreeze_blocks", ">= 1")
        _check(self.unfreeze_layers is None or self.unfreeze_layers >= 1, "train.fine_tune.unfreeze_layers", ">= 1")
        _check(1 <= self.epochs <= MAX_EPOCHS, "train.fine_tune.epochs", f"1..{MAX_EPOCHS}")
        _check(0 < self.learning_rate < 1, "train.fine_tune.learning_rate", "between 0 and 1")


@dataclass
class AugmentConfig:
    flip: bool = True
    rotation: float = 0.1  # fraction of a full turn
    zoom: float = 0.2

    def validate(self) -> None:
        _check(0 <= self.rotation <= 0.5, "train.augment.rotation", "0..0.5")
        _check(0 <= self.zoom < 1, "train.augment.zoom", "0..1")


@dataclass
class DistillConfig:
    """Knowledge distillation (trainer/distill.py): a teacher's soft targets on the photos and on seeded views."""

    teacher: str | None = None  # a finished run folder (its model.keras); None: no distillation
    weight: float = 0.5  # of the teacher in the targets: (1 - weight) one-hot + weight teacher
    temperature: float = 1.0  # > 1 softens the teacher's probabilities, < 1 sharpens them
    views: int = 2  # seeded augmented views (random resized crop + flip) per training photo, labelled by the teacher

    def validate(self) -> None:
        _check(
            self.teacher is None or (isinstance(self.teacher, str) and bool(self.teacher.strip())),
            "train.distill.teacher",
            "a run folder",
        )
        _check(0 <= self.weight <= 1, "train.distill.weight", "a fraction 0..1")
        _check(
            math.isfinite(self.temperature) and 0.1 <= self.temperature <= 20, "train.distill.temperature", "0.1..20"
        )
        _check(isinstance(self.views, int) and 0 <= self.views <= 16, "train.distill.views", "0..16")


@dataclass
class TrainConfig:
    seed: int = 1337
    batch_size: int = 32
    cache_flipped: bool = False  # cached modes: add mirrored training images (one more pass of the base)
    feature_extraction: FeatureExtractionConfig = field(default_factory=FeatureExtractionConfig)
    fine_tune: FineTuneConfig = field(default_factory=FineTuneConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    # tf.distribute (trainer/distribute.py): auto = MirroredStrategy when more than one GPU is visible, else
    # none; multi_worker = MultiWorkerMirroredStrategy from the TF_CONFIG environment variable. batch_size is
    # per replica: the global batch is batch_size x replicas and the learning rates scale the same way.
    distribute: Literal["auto", "none", "mirrored", "multi_worker"] = "auto"
    # auto = mixed_float16 when a GPU is visible, never on CPU (the softmax stays float32; the saved model is float32)
    mixed_precision: Literal["auto", "off", "mixed_float16"] = "auto"
    # auto = balanced weights n / (classes x count) when the largest training class has more than
    # CLASS_IMBALANCE_RATIO (1.5) times the images of the smallest; none = every image weighs 1
    class_weight: Literal["auto", "none"] = "auto"
    # the training targets (1 - label_smoothing) x one-hot (or the teacher's targets) + label_smoothing / classes;
    # validation keeps the plain labels, so val_loss measures the same thing whatever this is (0: plain labels)
    label_smoothing: float = 0.0

    def validate(self) -> None:
        _check(0 <= self.seed <= MAX_SEED, "train.seed", f"an integer 0..{MAX_SEED}")
        _check(
            math.isfinite(self.label_smoothing) and 0.0 <= self.label_smoothing < 1.0,
            "train.label_smoothing",
            "a fraction in [0, 1)",
        )
        _check(self.batch_size >= 1, "train.batch_size", ">= 1")
        _check(
            self.feature_extraction.enabled or self.fine_tune.enabled,
            "train",
            "at least one of feature_extraction.enabled / fine_tune.enabled",
        )


@dataclass
class QATConfig:
    # A short fine-tune of the quantization-aware model; the epoch with the best validation loss is kept
    # (epoch 0 = calibrated, not trained). On cats vs dogs at 288 px, epochs 1-2 over the whole training
    # split never beat epoch 0 on validation and cost 3 minutes each on 2 cores: one epoch on 500 images.
    epochs: int = 1
    learning_rate: float = 1e-5
    max_images: int | None = 500  # None: the whole training split
    validation_images: int | None = 500  # seeded sample of the validation split that picks the epoch
    # tflite-qat-int8:auto (in the default export.formats) runs only when post-training tflite-int8 loses more
    # than this many points of validation accuracy against the Keras model; the manifest says which and why
    trigger_points: float = 0.3

    def validate(self) -> None:
        _check(1 <= self.epochs <= MAX_EPOCHS, "export.qat.epochs", f"1..{MAX_EPOCHS}")
        _check(
            isinstance(self.trigger_points, (int, float))
            and not isinstance(self.trigger_points, bool)
            and math.isfinite(self.trigger_points),
            "export.qat.trigger_points",
            "a number of points",
        )
        for key in ("max_images", "validation_images"):
            value = getattr(self, key)
            _check(value is None or value >= 1, f"export.qat.{key}", ">= 1 or null")
        _check(0 < self.learning_rate < 1, "export.qat.learning_rate", "between 0 and 1")


@dataclass
class ExportMetadataConfig:
    """What every artifact says about the model (the edge_export entry, TFLite's standard TFLITE_METADATA,
    ONNX metadata_props). None: name "<backbone> classifier", a description of the classes, version =
    the edge-export version; author and license are left out unless set."""

    name: str | None = None
    description: str | None = None
    version: str | None = None
    author: str | None = None
    license: str | None = None

    def validate(self) -> None:
        for key in ("name", "description", "version", "author", "license"):
            value = getattr(self, key)
            _check(
                value is None or (isinstance(value, str) and len(value) <= 10_000 and "\x00" not in value),
                f"export.metadata.{key}",
                "text (at most 10000 characters) or null",
            )


@dataclass
class ExportConfig:
    # Names from the format registry (export/formats.py: checked against it before any work, by the
    # application), families (tflite, onnx), "all", or "tflite-qat-int8:auto". The default has
    # tflite-qat-int8 in its auto mode: it costs about 4 of a build's minutes on 2 cores and, on cats vs dogs,
    # matched the post-training tflite-int8 (99.1% validation accuracy, 99.9% agreement, both), so it runs
    # only when tflite-int8 loses more than export.qat.trigger_points; name it plainly to always run it.
    formats: list[str] = field(
        default_factory=lambda: [
            "tflite-fp32",
            "tflite-fp16",
            "tflite-dynamic",
            "tflite-int8",
            "onnx-fp32",
            "onnx-int8",
            "tflite-qat-int8:auto",
        ]
    )
    int8_io: Literal["uint8", "int8"] = "uint8"  # input/output type of full-integer TFLite models
    # tflite-int8: bias correction of the weights' rounding (export/bias_correction.py); auto converts with and
    # without it and keeps the one agreeing better with the Keras model on the validation photos
    int8_bias_correction: Literal["auto", "always", "never"] = "auto"
    representative_images: int = 200  # calibration set drawn from the training split
    representative_seed: int = 0
    onnx_opset: int = 17
    accuracy_budget: float = 1.0  # max drop in validation accuracy (points) before an artifact fails
    parity_images: int | None = None  # None: the whole validation split; else a seeded sample
    qat: QATConfig = field(default_factory=QATConfig)
    metadata: ExportMetadataConfig = field(default_factory=ExportMetadataConfig)

    def validate(self) -> None:
        _check(self.representative_images >= 1, "export.representative_images", ">= 1")
        _check(0 <= self.representative_seed <= MAX_SEED, "export.representative_seed", f"an integer 0..{MAX_SEED}")
        _check(7 <= self.onnx_opset <= 21, "export.onnx_opset", "7..21")
        _check(self.accuracy_budget >= 0, "export.accuracy_budget", ">= 0 (points)")
        _check(self.parity_images is None or self.parity_images >= 1, "export.parity_images", ">= 1")
        _check(
            bool(self.formats) and all(isinstance(f, str) for f in self.formats),
            "export.formats",
            "a list of format names",
        )


@dataclass
class BenchConfig:
    threads: list[int] = field(default_factory=lambda: [1, 0])  # 0: all cores
    warmup: int = 10
    runs: int = 100  # timed single-image runs per artifact and thread count
    batch_size: int = 8  # for throughput
    min_accuracy: float | None = None  # fail the run if any artifact is below (fraction, e.g. 0.985)
    robustness: bool = True  # accuracy under a seeded suite of camera-like shifts (benchmarks/robustness.py)
    misclassified: int = 500  # misclassified test images listed per artifact in bench.json (worst first)

    def validate(self) -> None:
        _check(
            bool(self.threads)
            and all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t <= MAX_THREADS for t in self.threads),
            "bench.threads",
            f"a list of thread counts 0..{MAX_THREADS} (0 = all cores)",
        )
        _check(isinstance(self.robustness, bool), "bench.robustness", "true or false")
        _check(
            isinstance(self.misclassified, int)
            and not isinstance(self.misclassified, bool)
            and 0 <= self.misclassified <= 100_000,
            "bench.misclassified",
            "a whole number 0..100000 (images listed per artifact)",
        )
        _check(5 <= self.runs <= MAX_RUNS, "bench.runs", f"5..{MAX_RUNS}")
        _check(self.warmup >= 0, "bench.warmup", ">= 0")
        _check(self.batch_size >= 1, "bench.batch_size", ">= 1")
        _check(self.min_accuracy is None or 0 <= self.min_accuracy <= 1, "bench.min_accuracy", "a fraction 0..1")


@dataclass
class BuildConfig:
    stages: list[str] = field(default_factory=lambda: ["train", "export", "bench"])
    accuracy_budget: float = 1.0  # recommendation: at most this many points below the Keras model
    max_size_mb: float | None = None  # recommendation: artifact size limit
    test_data: str | None = None  # folder to benchmark on; default: the dataset's test/ (else validation/)

    def validate(self) -> None:
        # the stage names are the build's (edge_export/pipeline/stages.py): checked there, before any work
        _check(
            bool(self.stages) and all(isinstance(s, str) for s in self.stages), "build.stages", "a list of stage names"
        )
        _check(self.accuracy_budget >= 0, "build.accuracy_budget", ">= 0 (points)")
        _check(self.max_size_mb is None or self.max_size_mb > 0, "build.max_size_mb", "> 0")


@dataclass
class TuneConfig:
    """``edge-export tune``: the search space, the device's constraints and the search's budget."""

    backbones: list[str] = field(default_factory=list)  # empty: every registered backbone whose weights load offline
    image_sizes: list[int] = field(default_factory=lambda: [160, 192, 224, 256, 288, 320])
    fine_tune_blocks: list[int] = field(default_factory=lambda: [0, 1, 2, 3])  # 0: head only (fine_tune.enabled=false)
    precisions: list[str] = field(default_factory=lambda: ["int8", "fp16"])  # tflite-int8 / tflite-fp16 (also fp32)
    device: str = "local"  # where latency is measured: local, or ssh://[USER@]HOST[:PORT]
    max_latency_ms: float | None = None  # p50 at 1 thread on the device
    max_size_mb: float | None = None
    min_accuracy: float | None = None  # validation accuracy (fraction); None: the most accurate within the limits
    budget_minutes: float | None = None  # no new candidate is started after this; None: no limit
    promote: float = 0.5  # successive halving: fraction of the head-only (backbone, size) pairs fine-tuned
    # a promoted pair goes one block deeper only while that pays: after this many depths in a row that did not beat
    # its best shallower model (Keras validation accuracy, the head-only model included), its deeper depths are not
    # trained. None: every depth of the space
    depth_patience: int | None = 1
    quantize_top: int = 4  # trained models near the frontier that are quantized (exported) and measured
    # what is ranked and limited: "p50" (what bench reports) or "min" (the fastest call: on a busy, shared
    # machine the uncontended time; p50 there grows with the load, and faster for long calls than short)
    latency_statistic: Literal["p50", "min"] = "p50"
    latency_runs: int = 100  # timed runs per random-weight model (after latency_warmup), interleaved
    latency_warmup: int = 5
    latency_table: str | None = None  # a JSON latency table measured earlier (instead of measuring)
    # accuracy under the bench's camera-like shifts (validation images) is measured for every quantized
    # candidate and breaks ties by default; with a value, it is also a constraint (fraction)
    min_robustness: float | None = None
    # a model (.tflite / .onnx) the user names (`tune --faster-than REF`): timed in the same rounds as every
    # candidate, interleaved, on the same device; candidates are then limited by their latency RATIO to it
    # (tuning/relative.py). max_latency_ratio: the ceiling (default 1.0 with a reference; 0.8 = 20% faster)
    latency_reference: str | None = None
    max_latency_ratio: float | None = None
    latency_retimes: int = 2  # more rounds (each with the reference) for candidates near the ratio ceiling
    latency_near: float = 0.25  # near: a ratio within this fraction of the ceiling, either side
    # distillation as a dimension (tuning/search.py, step 4): "auto" (the teacher is the more accurate of the
    # search's best trained model and the build's own model, trained on the spot) or a finished run folder; the
    # distill_top trained models nearest the frontier are trained again with its soft targets (train.distill.*:
    # weight, temperature, views), all students sharing one teacher pass. None: no distilled candidates.
    distill: str | None = None
    distill_top: int = 2

    @property
    def ratio_ceiling(self) -> float | None:
        """The latency ratio ceiling in force: max_latency_ratio, 1.0 with only a reference, None without one."""
        if self.latency_reference is None:
            return None
        return 1.0 if self.max_latency_ratio is None else self.max_latency_ratio

    def validate(self) -> None:
        _check(all(isinstance(b, str) for b in self.backbones), "tune.backbones", "a list of backbone names")
        _check(
            bool(self.image_sizes)
            and all(isinstance(s, int) and not isinstance(s, bool) and 16 <= s <= 1024 for s in self.image_sizes),
            "tune.image_sizes",
            "a list of sizes 16..1024",
        )
        _check(
            bool(self.fine_tune_blocks)
            and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 50 for b in self.fine_tune_blocks),
            "tune.fine_tune_blocks",
            "a list of 0..50",
        )
        _check(
            bool(self.precisions) and all(p in ("int8", "fp16", "fp32") for p in self.precisions),
            "tune.precisions",
            "a list of int8, fp16, fp32",
        )
        _check(
            isinstance(self.device, str) and bool(self.device.strip()),
            "tune.device",
            "local or ssh://[USER@]HOST[:PORT]",
        )
        for key in ("max_latency_ms", "max_size_mb", "budget_minutes"):
            value = getattr(self, key)
            _check(value is None or (math.isfinite(value) and value > 0), f"tune.{key}", "> 0 or null")
        _check(self.min_accuracy is None or 0 <= self.min_accuracy <= 1, "tune.min_accuracy", "a fraction 0..1")
        _check(self.min_robustness is None or 0 <= self.min_robustness <= 1, "tune.min_robustness", "a fraction 0..1")
        _check(0 < self.promote <= 1, "tune.promote", "a fraction in (0, 1]")
        _check(
            self.depth_patience is None
            or (
                isinstance(self.depth_patience, int)
                and not isinstance(self.depth_patience, bool)
                and self.depth_patience >= 1
            ),
            "tune.depth_patience",
            ">= 1, or null for every depth",
        )
        _check(
            self.distill is None or (isinstance(self.distill, str) and bool(self.distill.strip())),
            "tune.distill",
            "auto, a finished run folder, or null",
        )
        _check(
            isinstance(self.distill_top, int) and not isinstance(self.distill_top, bool) and self.distill_top >= 1,
            "tune.distill_top",
            ">= 1",
        )
        _check(self.quantize_top >= 1, "tune.quantize_top", ">= 1")
        _check(self.latency_runs >= 5, "tune.latency_runs", ">= 5")
        _check(self.latency_warmup >= 0, "tune.latency_warmup", ">= 0")
        _check(
            self.max_latency_ratio is None or (math.isfinite(self.max_latency_ratio) and self.max_latency_ratio > 0),
            "tune.max_latency_ratio",
            "> 0 or null",
        )
        _check(
            self.max_latency_ratio is None or self.latency_reference is not None,
            "tune.max_latency_ratio",
            "a ratio to tune.latency_reference: name the reference model too (--faster-than REF)",
        )
        _check(
            self.latency_reference is None
            or (isinstance(self.latency_reference, str) and bool(self.latency_reference.strip())),
            "tune.latency_reference",
            "a .tflite or .onnx file",
        )
        _check(
            self.latency_reference is None or self.latency_table is None,
            "tune.latency_reference",
            "not with tune.latency_table (a table holds no timing of the reference)",
        )
        _check(
            isinstance(self.latency_retimes, int) and 0 <= self.latency_retimes <= 10, "tune.latency_retimes", "0..10"
        )
        _check(
            math.isfinite(self.latency_near) and 0 < self.latency_near <= 1, "tune.latency_near", "a fraction in (0, 1]"
        )


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    # where each dotted key got its value: "default", a config file path, or "override"
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _as_plain(getattr(self, f.name)) for f in _fields(self)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_annotated_yaml(self) -> str:
        """A valid config file (``--config`` reads it back) with each value's source as a YAML comment."""
        rows: list[tuple[str, str | None]] = []  # (YAML line, source comment)

        def section(d: dict[str, Any], prefix: str, depth: int) -> None:
            for key, value in d.items():
                indent = "  " * depth
                if isinstance(value, dict):
                    rows.append((f"{indent}{key}:", None))
                    section(value, f"{prefix}{key}.", depth + 1)
                else:
                    rows.append((f"{indent}{key}: {_yaml_scalar(value)}", self.sources.get(prefix + key, "default")))

        section(self.to_dict(), "", 0)
        width = min(56, max(len(text) for text, _ in rows))
        lines = ["# edge-export config (defaults < config file < key=value); after '#': where each value came from"]
        lines += [text if source is None else f"{text:<{width}}  # {source}" for text, source in rows]
        return "\n".join(lines) + "\n"


def _yaml_scalar(value: Any) -> str:
    """One value as YAML flow text on one line (lists as [a, b]), read back as the same value."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**20).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    return text


def load_config(path: str | Path | Config | None = None, overrides: dict[str, Any] | list[str] | None = None) -> Config:
    """Defaults, then the YAML file at ``path`` (or a ``Config`` to start from), then ``overrides``
    (dotted keys or ``key=value`` strings)."""
    raw: dict[str, Any] = {}
    sources = {key: "default" for key in _dotted_keys(Config)}
    if isinstance(path, Config):
        raw = path.to_dict()
        sources.update(path.sources)
        path = None
    elif path is not None:
        path = Path(path)
        if not path.is_file():
            raise EdgeExportError("config file not found", path=path, hint="check the --config path")
        loaded = read_yaml(path) or {}  # bounded: size, nesting, no aliases ("billion laughs")
        if not isinstance(loaded, dict):
            raise EdgeExportError("a config file must be a mapping of sections", path=path)
        raw = loaded
        for key in flatten(loaded):
            sources[key] = str(path)
    for key, value in parse_overrides(overrides).items():
        _set_dotted(raw, key, value)
        sources[key] = "override"
    config = _build(Config, raw, "", path)
    config.sources = sources
    _validate(config)
    return config


# ---------------------------------------------------------------- internals


MAX_EPOCHS = 10_000  # upper bounds: a typo (epochs=1e9, threads=100000) is an error, not a run that never ends
MAX_THREADS = 1024
MAX_RUNS = 1_000_000


def _check(ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise EdgeExportError(
            f"bad config value for {key}: expected {expected}", hint=f"set {key} in the config or with {key}=VALUE"
        )


def _fields(obj_or_cls: Any) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(obj_or_cls) if f.name != "sources"]


def _as_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _as_plain(getattr(value, f.name)) for f in _fields(value)}
    return value


def _dotted_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in _fields(cls):
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            keys += _dotted_keys(hint, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as dotted keys: ``{"export": {"qat": {"epochs": 1}}}`` -> ``{"export.qat.epochs": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def parse_overrides(overrides: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return {k: v for k, v in overrides.items() if v is not None}
    parsed = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise EdgeExportError(f"override {item!r} is not key=value", hint="write e.g. train.batch_size=16")
        try:
            parsed[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except (yaml.YAMLError, ValueError):  # ValueError: e.g. a bad date such as 2024-02-30
            parsed[key.strip()] = text
    return parsed


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise EdgeExportError(f"cannot set {key}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type[_T], raw: Any, prefix: str, path: Path | None) -> _T:
    where = f" in {path}" if path else ""
    if not isinstance(raw, dict):
        raise EdgeExportError(f"config section {prefix.rstrip('.') or 'top level'} must be a mapping{where}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in _fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        name = f"{prefix}{unknown[0]}"
        raise EdgeExportError(
            f"unknown config key {name!r}{where}",
            hint=f"known keys under {prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(known))}",
        )
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        hint = hints[key]
        dotted = f"{prefix}{key}"
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, f"{dotted}.", path)
        else:
            kwargs[key] = _coerce(value, hint, dotted, where)
    return cls(**kwargs)


_TRUE, _FALSE = ("on", "yes", "true", "y"), ("off", "no", "false", "n")


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key, where)
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads off/no/false (on/yes/true) as booleans: the choice meant
            spelled = [a for a in args if isinstance(a, str) and a.lower() in (_TRUE if value else _FALSE)]
            value = spelled[0] if len(spelled) == 1 else value
        if value not in args:
            raise EdgeExportError(
                f"bad config value {value!r} for {key}{where}", hint=f"use one of: {', '.join(map(str, args))}"
            )
        return value
    bad = EdgeExportError(f"bad config value {value!r} for {key}{where}: expected {getattr(hint, '__name__', hint)}")
    if isinstance(value, float) and not math.isfinite(value) and hint in (int, float):
        raise EdgeExportError(
            f"bad config value {value!r} for {key}{where}: expected a finite number", hint=f"set {key} to a number"
        )
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise bad
        return int(value)
    if hint is float:
        if isinstance(value, str):
            try:
                number = float(value)  # YAML 1.1 reads "1e-5" as a string
            except ValueError:
                raise bad from None
            return _coerce(number, hint, key, where)  # "nan", "inf"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if hint is list or origin is list:  # list[int], list[str] ... : a list of any items, as YAML reads it
        if isinstance(value, str):
            try:
                value = [yaml.safe_load(v.strip()) for v in value.split(",") if v.strip()]
            except (yaml.YAMLError, ValueError):  # e.g. "2024-02-30" parses as a bad date (found by fuzzing)
                raise bad from None
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # bench.threads=1 means [1]
        if not isinstance(value, list):
            raise bad
        return value
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    return value


def _validate(obj: Any) -> None:
    for f in _fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _validate(value)
    if hasattr(obj, "validate"):
        obj.validate()
