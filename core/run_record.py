"""The run record (``RUN_DIR/run.json``): which files one ``train`` wrote, with their sha256.

``train`` removes the old record before it writes anything and writes the new one last, after
model.keras. A run folder whose record is missing, or does not match its files, holds files from two
runs (e.g. an interrupted ``train`` left the old model.keras beside the new labels.txt): no reader
pairs them. Readers call ``RunFolder.verify()``, which returns the record or raises a clear error.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from edge_export.core import __version__
from edge_export.core.atomic import write_json
from edge_export.core.errors import EdgeExportError
from edge_export.core.hashing import sha256_file
from edge_export.core.run_folder import RunFolder
from edge_export.core.untrusted import printable, read_json

RECORD_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    files: dict[str, str]  # file name in the run folder -> sha256, every name in RunFolder.recorded(its model)
    created: str

    @property
    def model_name(self) -> str:
        """model.keras, or model.onnx for an imported ONNX model."""
        return next(name for name in RunFolder.MODEL_FILES if name in self.files)

    @property
    def model_sha256(self) -> str:
        return self.files[self.model_name]


def forget_record(run: RunFolder) -> None:
    """First thing a ``train`` does: from here until ``write_record``, the folder holds no valid run."""
    run.run_record.unlink(missing_ok=True)


def write_record(run: RunFolder, model: str = RunFolder.MODEL) -> RunRecord:
    """Last thing a ``train`` does: hash every file it wrote (``model``: its model file's name, one of
    RunFolder.MODEL_FILES) and record them under a new run id."""
    record = RunRecord(
        run_id=uuid.uuid4().hex,
        files={name: sha256_file(run.root / name) for name in RunFolder.recorded(model)},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    write_json(run.run_record, {
        "record_version": RECORD_VERSION, "run_id": record.run_id, "created": record.created,
        "edge_export": __version__, "files": record.files,
    })
    return record


def verify_run(run: RunFolder) -> RunRecord:
    """The run record, after checking every recorded file against it; else a clear EdgeExportError."""
    run.require_model()
    where = printable(run.root)
    fix = f"re-run `edge-export train --out {where}`"
    if not run.run_record.is_file():
        raise EdgeExportError(
            f"run folder {where} has no run record ({RunFolder.RUN_RECORD}): train was interrupted, "
            "or an older edge-export made it, so its files may come from different runs",
            path=run.run_record, hint=fix,
        )
    record = _parse(read_json(run.run_record, what=RunFolder.RUN_RECORD), run, fix)
    model = record.model_name
    if run.reference_model.name != model:  # model.keras of another run beside an imported model.onnx
        raise EdgeExportError(
            f"run folder {where} holds files from different runs ({run.reference_model.name} is not in its run "
            f"record, which names {model})", path=run.reference_model, hint=fix,
        )
    for name in RunFolder.recorded(model):
        path = run.root / name
        if not path.is_file():
            raise EdgeExportError(
                f"run folder {where} is incomplete: {name} is missing (train was interrupted?)", path=path, hint=fix
            )
        if sha256_file(path) != record.files[name]:
            what = (
                f"{model} does not match its run record: corrupt, truncated or replaced"
                if name == model else f"{name} does not match {model}'s run"
            )
            raise EdgeExportError(
                f"run folder {where} holds files from different runs ({what}; train was interrupted?)",
                path=path, hint=fix,
            )
    return record


def _parse(data: object, run: RunFolder, fix: str) -> RunRecord:
    files = data.get("files") if isinstance(data, dict) else None
    run_id = data.get("run_id") if isinstance(data, dict) else None
    ok = (
        isinstance(run_id, str) and _RUN_ID.match(run_id) is not None
        and isinstance(files, dict) and any(set(files) == set(RunFolder.recorded(m)) for m in RunFolder.MODEL_FILES)
        and all(isinstance(v, str) and _SHA256.match(v) for v in files.values())
    )
    if not ok:
        raise EdgeExportError(
            f"{RunFolder.RUN_RECORD} is malformed (expected a run_id and the sha256 of {', '.join(RunFolder.RECORDED)})",
            path=run.run_record, hint=fix,
        )
    return RunRecord(run_id=run_id, files=dict(files), created=str(data.get("created", "")))
