"""The export folder (``RUN_DIR/export/``): its files (names from ``core.run_folder``; artifact names from the
format registry) and clearing it for a new export."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

from edge_export.core.atomic import remove_partials
from edge_export.core.run_folder import RunFolder
from edge_export.export.formats import FORMATS, FormatSpec


class ExportFolder:
    def __init__(self, run: RunFolder):
        self.run = run
        self.root = run.export_dir

    @property
    def manifest(self) -> Path:
        return self.run.export_manifest

    @property
    def model_card(self) -> Path:
        return self.run.export_model_card

    @property
    def labels(self) -> Path:
        return self.run.export_labels

    def artifact(self, fmt: FormatSpec) -> Path:
        return self.root / fmt.filename

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def clear(self, keep: Iterable[Path] = ()) -> None:
        """Remove every file we own except the artifacts in ``keep`` (those an earlier export of this same
        model.keras made, that this export does not replace), and leftovers of interrupted writes.

        The caller first removes or rewrites the manifest (so it never claims a file removed here); files
        of formats not kept are not left over (they could belong to an older model.keras).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        kept = {Path(p) for p in keep}
        owned = [self.model_card, self.labels, *(self.artifact(f) for f in FORMATS.values())]
        for path in owned:
            if path not in kept:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        remove_partials(self.root)

    def drop_unclaimed(self, claimed: Iterable[str]) -> None:
        """After the manifest is written: remove artifact files it does not list (``claimed``: its paths), e.g. an
        earlier export's file of a format that was skipped this time."""
        listed = set(claimed)
        for fmt in FORMATS.values():
            if fmt.filename not in listed:
                with contextlib.suppress(FileNotFoundError):
                    self.artifact(fmt).unlink()
