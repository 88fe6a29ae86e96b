"""``ModelSource``: where a model that edge-export did not train came from, and what was decided about it.

Written into ``RUN/model_spec.json`` (key ``source``) by the import of a user's model (export/import_model.py);
read by export (QAT is skipped for such a model), the model card and the report. Its ``input_scale`` says what
the user's model expects: the import folds it into the saved model as its first layer, so every artifact takes
RGB pixels 0-255 like a model edge-export trained, and the runtime's preprocessing record stays the one record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_export.core.errors import EdgeExportError

# what the model expects from a pixel value p in 0..255, as (mean, std) per channel: x = (p - mean) / std
INPUT_SCALES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "0-255": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # Rescaling / preprocess_input inside the model (Keras tutorials)
    "0-1": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),
    "-1-1": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),  # MobileNet / EfficientNet-Lite "tf" mode
    "imagenet": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),  # torchvision's mean/std, RGB
}
OUTPUT_KINDS = ("softmax", "logits", "sigmoid", "sigmoid-logit")  # sigmoid*: one unit, the second class positive
SOURCE_KINDS = ("keras", "h5", "savedmodel", "onnx")


@dataclass(frozen=True)
class ModelSource:
    path: str  # absolute path of the user's file (or folder) when imported
    sha256: str  # of the file; of every file below it (sorted relative paths and bytes) for a SavedModel folder
    kind: str  # SOURCE_KINDS
    input_scale: str  # INPUT_SCALES key
    output: str  # OUTPUT_KINDS
    decided: dict[str, str] = field(default_factory=dict)  # per choice: "flag", "model" or "validation check"
    check: list[dict[str, Any]] = field(default_factory=list)  # the check's table (candidate, accuracy, images)

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS or self.input_scale not in INPUT_SCALES or self.output not in OUTPUT_KINDS:
            raise EdgeExportError(
                f"model_spec.json's source is malformed (kind {self.kind!r}, input_scale {self.input_scale!r}, "
                f"output {self.output!r})",
                hint="re-run the build with --model FILE",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "kind": self.kind,
            "input_scale": self.input_scale,
            "output": self.output,
            "decided": dict(self.decided),
            "check": list(self.check),
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path | None = None) -> ModelSource:
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) for k in ("path", "sha256", "kind", "input_scale", "output")
        ):
            raise EdgeExportError(
                "model_spec.json's source is malformed", path=source, hint="re-run the build with --model FILE"
            )
        decided, check = data.get("decided"), data.get("check")
        decided = decided if isinstance(decided, dict) else {}
        check = check if isinstance(check, list) else []
        return cls(
            path=data["path"],
            sha256=data["sha256"],
            kind=data["kind"],
            input_scale=data["input_scale"],
            output=data["output"],
            decided={str(k): str(v) for k, v in decided.items()},
            check=[row for row in check if isinstance(row, dict)],
        )
