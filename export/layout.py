"""The export folder (``RUN_DIR/export/``): the one owner of the file names in it."""

from __future__ import annotations

import contextlib
from pathlib import Path

from edge_export.atomic import remove_partials
from edge_export.export.formats import FORMATS, FormatSpec
from edge_export.run_folder import RunFolder


class ExportFolder:
    MANIFEST = "manifest.json"  # written last: its presence means a finished export
    MODEL_CARD = "model_card.json"
    LABELS = "labels.txt"

    def __init__(self, run: RunFolder):
        self.run = run
        self.root = run.export_dir

    @property
    def manifest(self) -> Path:
        return self.root / self.MANIFEST

    @property
    def model_card(self) -> Path:
        return self.root / self.MODEL_CARD

    @property
    def labels(self) -> Path:
        return self.root / self.LABELS

    def artifact(self, fmt: FormatSpec) -> Path:
        return self.root / fmt.filename

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def clear(self) -> None:
        """Start a fresh export: the manifest goes first (so nothing claims the files), then everything we own.

        The folder always holds one export; formats not requested this time are not left over from an
        earlier one (they could belong to an older model.keras).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        owned = [self.manifest, self.model_card, self.labels, *(self.artifact(f) for f in FORMATS.values())]
        for path in owned:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        remove_partials(self.root)
