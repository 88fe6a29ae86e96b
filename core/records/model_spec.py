"""``ModelSpec``: everything needed to rebuild a trained model's architecture (``RUN/model_spec.json``).

Written by ``trainer/run.py``; read (``ModelSpec.read`` / ``from_dict``, the one reader) by export, the
QAT worker, bench and the build report. The builder is ``trainer/model.py``; the preprocessing stored
here is the runtime's ``Preprocessing.to_dict()`` of the model's input (checked by the runtime where used).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_export.core.config import ModelConfig
from edge_export.core.errors import EdgeExportError
from edge_export.core.records import check_format_version
from edge_export.core.records.model_source import ModelSource
from edge_export.core.records.preprocessing import Preprocessing
from edge_export.core.untrusted import read_json, safe_name

MODEL_SPEC_VERSION = 1
DEFAULT_DROPOUT: float = ModelConfig.dropout  # the one default (the model.dropout setting's)
_REMADE = "re-run `edge-export train` for this run"


@dataclass(frozen=True)
class ModelSpec:
    backbone: str
    image_size: int
    num_classes: int
    dropout: float = DEFAULT_DROPOUT
    # what model_spec.json records beside the architecture (None when built in memory)
    preprocessing: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    weights: str | None = field(default=None, compare=False)  # "imagenet", "none" or a weights file
    versions: dict[str, str] | None = field(default=None, compare=False, hash=False)  # edge_export, keras, python
    # a model edge-export did not train (build --model FILE): where it came from and what was decided about it
    source: ModelSource | None = field(default=None, compare=False, hash=False)

    def preprocessing_record(self, resize: str | None = None, decoder: str | None = None) -> Preprocessing:
        """The typed preprocessing of this model's input: the recorded one, or (a spec from before it was recorded)
        RGB 0-255 at the model's size; ``resize`` and ``decoder`` override the recorded ones. The one place a run's
        preprocessing is resolved: export, bench and the trainer all ask here."""
        recorded = Preprocessing.from_dict(self.preprocessing) if self.preprocessing else None
        given: dict[str, Any] = {k: v for k, v in (("resize", resize), ("decoder", decoder)) if v}
        if recorded is None:
            return Preprocessing(size=(self.image_size, self.image_size), **given)
        return dataclasses.replace(recorded, **given) if given else recorded

    @property
    def imported(self) -> bool:
        return self.source is not None

    @property
    def loads_external_code(self) -> bool:
        """A SavedModel's import: model.keras holds a layer that loads the user's SavedModel folder (Keras calls that
        unsafe deserialization; the user named the folder, so it is loaded)."""
        return self.source is not None and self.source.kind == "savedmodel"

    def architecture(self) -> dict[str, Any]:
        """The four values that rebuild the same architecture (e.g. the QAT worker's job)."""
        return {
            "backbone": self.backbone,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "dropout": self.dropout,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.architecture(),
            "preprocessing": self.preprocessing,
            "weights": self.weights,
            **(self.versions or {}),
            **({"source": self.source.to_dict()} if self.source is not None else {}),
            "format_version": MODEL_SPEC_VERSION,
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path | None = None) -> ModelSpec:
        check_format_version(data, "format_version", MODEL_SPEC_VERSION, what="model_spec.json", source=source)

        def bad(message: str) -> EdgeExportError:
            return EdgeExportError(f"model_spec.json is malformed ({message})", path=source, hint=_REMADE)

        for key in ("backbone", "image_size", "num_classes"):
            if key not in data:
                raise bad(f"no {key}")
        backbone = safe_name(data["backbone"], what="backbone", source=source)
        sizes = {}
        for key, low in (("image_size", 8), ("num_classes", 1)):
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < low:
                raise bad(f"{key} {value!r} is not an integer >= {low}")
            sizes[key] = int(value)
        dropout = data.get("dropout", DEFAULT_DROPOUT)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise bad(f"dropout {dropout!r} is not a fraction in [0, 1)")
        preprocessing = data.get("preprocessing")
        if preprocessing is not None and not isinstance(preprocessing, dict):
            raise bad("preprocessing is not an object")
        weights = data.get("weights")
        if weights is not None and not isinstance(weights, str):
            raise bad("weights is not a string")
        versions = {k: data[k] for k in ("edge_export", "keras", "python") if isinstance(data.get(k), str)}
        source_data = data.get("source")
        model_source = ModelSource.from_dict(source_data, source=source) if source_data is not None else None
        return cls(
            backbone=backbone,
            dropout=float(dropout),
            preprocessing=preprocessing,
            weights=weights,
            versions=versions or None,
            source=model_source,
            **sizes,
        )

    @classmethod
    def read(cls, path: str | Path) -> ModelSpec:
        """The run's model_spec.json; a clear error when it is missing or malformed."""
        path = Path(path)
        if not path.is_file():
            raise EdgeExportError("model_spec.json is missing", path=path, hint=_REMADE)
        return cls.from_dict(read_json(path, what="model_spec.json"), source=path)


def loads_external_code(model_path: str | Path) -> bool:
    """Whether the model.keras at ``model_path`` is a SavedModel's import (its model_spec.json beside it says so)."""
    spec = Path(model_path).with_name("model_spec.json")
    try:
        return spec.is_file() and ModelSpec.read(spec).loads_external_code
    except EdgeExportError:
        return False
