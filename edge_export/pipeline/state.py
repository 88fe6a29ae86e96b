"""Per-stage completion records in ``RUN_DIR/.build/<stage>.json``.

A record is written atomically only after the stage finished; it names the stage's fingerprint and
the sha256 of each output. A stage is skipped only if the record's fingerprint matches and every
output is still there, unchanged. A build killed at any point therefore never trusts half-done work.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edge_export.core.atomic import write_json
from edge_export.core.hashing import sha256_file
from edge_export.core.run_folder import RunFolder


class StageState:
    def __init__(self, root: Path):
        self.folder = root / RunFolder.BUILD_STATE

    def _path(self, stage: str) -> Path:
        return self.folder / f"{stage}.json"

    def is_done(self, stage: str, fingerprint: str, root: Path) -> bool:
        path = self._path(stage)
        if not path.is_file():
            return False
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        if record.get("fingerprint") != fingerprint:
            return False
        for rel, digest in record.get("outputs", {}).items():
            file = root / rel
            if not file.is_file() or sha256_file(file) != digest:
                return False
        return True

    def mark_done(self, stage: str, fingerprint: str, root: Path, outputs: list[Path], seconds: float) -> None:
        write_json(
            self._path(stage),
            {
                "stage": stage,
                "fingerprint": fingerprint,
                "outputs": {str(p.relative_to(root)): sha256_file(p) for p in outputs if p.is_file()},
                "seconds": round(seconds, 2),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )

    def forget(self, stage: str) -> None:
        self._path(stage).unlink(missing_ok=True)

    def record(self, stage: str) -> dict | None:
        path = self._path(stage)
        return json.loads(path.read_text()) if path.is_file() else None
