"""The export manifest (``RUN/export/manifest.json``) and its artifact entries, as typed records.

``Manifest.from_dict`` / ``ArtifactRecord.from_dict`` are the one reader: every artifact's ``name`` is a
safe name (unique in a manifest), its ``path`` (when set) stays inside the folder it is relative to,
``sha256`` is 64 hex digits, ``size_bytes`` a non-negative integer, ``status``/``format``/``precision``
strings. ``folder / artifact.path`` is then safe to open, copy or replace. ``to_dict`` writes the same
keys, in the same order, as edge-export always has (the build's fingerprints hash the file).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_export.core.errors import EdgeExportError
from edge_export.core.records import check_format_version
from edge_export.core.untrusted import path_inside, printable, safe_name

MANIFEST_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REMADE = "the file was edited or comes from elsewhere: re-create it with edge-export"


def _error(message: str, source: str | Path | None) -> EdgeExportError:
    return EdgeExportError(message, path=source, hint=_REMADE)


def _sha256(value: Any, what: str, source: str | Path | None) -> str | None:
    if value is not None and not (isinstance(value, str) and _SHA256.match(value)):
        raise _error(f"{what}: sha256 {printable(repr(value), 80)} is not 64 hex digits", source)
    return value


@dataclass
class ArtifactRecord:
    """One exported artifact (a manifest entry; a bundle.json lists the same kind of entry)."""

    name: str
    format: str | None = None  # family: tflite | onnx (the runtime that loads it)
    precision: str | None = None  # fp32 | fp16 | dynamic-int8 | int8
    path: str | None = None  # relative to the export folder; None when nothing was written
    size_bytes: int | None = None
    sha256: str | None = None
    status: str = "ok"  # ok | failed
    error: str | None = None
    parity: dict[str, Any] | None = None  # accuracy, accuracy_drop, top1_agreement, max_abs_diff ... (export/parity.py)
    input: dict[str, Any] | None = None  # dtype, scale, zero_point of the model input
    seconds: float | None = None  # conversion + check
    details: dict[str, Any] = field(default_factory=dict)  # every other key, in order: converter extras, settings

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def accuracy(self) -> float | None:
        return (self.parity or {}).get("accuracy")

    @property
    def accuracy_drop(self) -> float | None:
        return (self.parity or {}).get("accuracy_drop")

    def fail(self, message: str) -> None:
        self.status, self.error = "failed", message

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "details"}
        if d["error"] is None:
            d.pop("error")
        return {**d, **self.details}

    @classmethod
    def from_dict(cls, data: Any, *, folder: str | Path, source: str | Path | None = None) -> ArtifactRecord:
        """The entry, checked; ``folder`` is what ``path`` is relative to (the export folder, a bundle)."""
        if not isinstance(data, dict):
            raise _error("malformed artifact entry (not an object)", source)
        name = safe_name(data.get("name"), what="artifact name", source=source)
        if data.get("path") is not None:
            path_inside(folder, data["path"], what=f"path of artifact {name}", source=source)
        _sha256(data.get("sha256"), f"artifact {name}", source)
        size = data.get("size_bytes")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise _error(
                f"artifact {name}: size_bytes {printable(repr(size), 80)} is not a non-negative integer", source
            )
        for key in ("status", "format", "precision", "error"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise _error(f"artifact {name}: {key} is not a string", source)
        for key in ("parity", "input"):
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise _error(f"artifact {name}: {key} is not an object", source)
        seconds = data.get("seconds")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))):
            raise _error(f"artifact {name}: seconds is not a number", source)
        known = {f.name for f in fields(cls)} - {"details"}
        status = data.get("status")
        return cls(
            **{key: data[key] for key in known if key in data and key != "status"},
            status=status if status is not None else "ok",
            details={k: v for k, v in data.items() if k not in known},
        )


@dataclass
class ExportedModel:
    """The manifest's ``model`` section: the model.keras the export was made from."""

    path: str | None = None  # relative to the export folder
    sha256: str | None = None  # the run record's sha256 of model.keras when the export began
    run_id: str | None = None
    backbone: str | None = None
    image_size: int | None = None
    num_classes: int | None = None
    # a model edge-export did not train: ModelSource.to_dict() (file, sha256, input scale, output; only then written)
    imported_from: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "imported_from" or self.imported_from}

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path | None = None) -> ExportedModel:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise _error("malformed manifest: model is not an object", source)
        for key in ("path", "run_id", "backbone"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise _error(f"malformed manifest: model {key} is not a string", source)
        for key in ("image_size", "num_classes"):
            value = data.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise _error(f"malformed manifest: model {key} is not an integer", source)
        _sha256(data.get("sha256"), "model", source)
        if data.get("imported_from") is not None and not isinstance(data["imported_from"], dict):
            raise _error("malformed manifest: model imported_from is not an object", source)
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


@dataclass
class Manifest:
    """What one export made: every artifact with its checks, the model it was made from, the settings."""

    artifacts: list[ArtifactRecord] = field(default_factory=list)
    model: ExportedModel = field(default_factory=ExportedModel)
    labels: str | None = None  # the export's labels.txt, relative to the export folder
    settings: dict[str, Any] = field(default_factory=dict)  # export settings; "formats": what this export made
    keras: dict[str, Any] = field(default_factory=dict)  # the Keras model's accuracy on the parity images
    seconds: float | None = None
    # formats requested as NAME:auto (tflite-qat-int8:auto): whether each ran, and why (export/exporter.py)
    auto: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    edge_export: str | None = None
    manifest_version: int = MANIFEST_VERSION

    @property
    def failed(self) -> list[str]:
        return [a.name for a in self.artifacts if not a.ok]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def formats(self) -> list[str]:
        """The formats this export made (an export of some formats keeps the earlier export's others)."""
        return list(self.settings.get("formats") or [])

    def artifact(self, name: str) -> ArtifactRecord | None:
        return next((a for a in self.artifacts if a.name == name), None)

    def __iter__(self) -> Iterator[ArtifactRecord]:
        return iter(self.artifacts)

    def __len__(self) -> int:
        return len(self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest_version": self.manifest_version,
            "edge_export": self.edge_export,
            "created": self.created,
            "model": self.model.to_dict(),
            "labels": self.labels,
            "settings": self.settings,
            "keras": self.keras,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "ok": self.ok,
            "failed": self.failed,
            "seconds": self.seconds,
            **({"auto": self.auto} if self.auto else {}),  # only when asked for: older manifests stay as they were
        }

    @classmethod
    def from_dict(cls, data: Any, *, folder: str | Path, source: str | Path | None = None) -> Manifest:
        """The manifest, checked (``folder``: the export folder its paths are relative to)."""
        if not isinstance(data, dict) or not isinstance(data.get("artifacts"), list):
            raise EdgeExportError(
                "malformed manifest (no list of artifacts)", path=source, hint="re-run `edge-export export`"
            )
        version = check_format_version(
            data, "manifest_version", MANIFEST_VERSION, what="export manifest", source=source
        )
        artifacts: list[ArtifactRecord] = []
        for entry in data["artifacts"]:
            artifact = ArtifactRecord.from_dict(entry, folder=folder, source=source)
            if any(a.name == artifact.name for a in artifacts):
                raise EdgeExportError(
                    f"malformed manifest: artifact {artifact.name!r} is listed twice",
                    path=source,
                    hint="re-run `edge-export export`",
                )
            artifacts.append(artifact)
        for key in ("settings", "keras", "auto"):
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise _error(f"malformed manifest: {key} is not an object", source)
        for key in ("labels", "created", "edge_export"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise _error(f"malformed manifest: {key} is not a string", source)
        seconds = data.get("seconds")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))):
            raise _error("malformed manifest: seconds is not a number", source)
        return cls(
            artifacts=artifacts,
            model=ExportedModel.from_dict(data.get("model"), source=source),
            labels=data.get("labels"),
            settings=dict(data.get("settings") or {}),
            keras=dict(data.get("keras") or {}),
            seconds=seconds,
            auto=dict(data.get("auto") or {}),
            created=data.get("created"),
            edge_export=data.get("edge_export"),
            manifest_version=version,
        )
