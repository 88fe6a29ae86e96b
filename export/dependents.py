"""What was made from a run's artifacts, and whether it still matches them.

``bench/bench.json`` records the sha256 of every file it measured (the exported artifacts and
model.keras), ``deploy/recommendation.json`` and each ``package/*/bundle.json`` the sha256 of the
artifact they hold. When an export replaces or removes an artifact, or a new train replaces model.keras,
they no longer match: they are stale, and their readers (the build's recommendation, ``package``) say
so instead of using them. Nothing here deletes anything.
"""

from __future__ import annotations

from typing import Any

from edge_export.core.errors import EdgeExportError
from edge_export.core.hashing import sha256_file
from edge_export.core.records.bench import KERAS, LOCAL, SOURCE, BenchResult
from edge_export.core.records.recommendation import Recommendation
from edge_export.core.run_folder import RunFolder
from edge_export.core.untrusted import printable, read_json
from edge_export.export.manifest import read_manifest

MEASURED_FROM_RUN = ("manifest", "run")  # bench.json row sources that are files of the run folder


def current_digests(run: RunFolder) -> dict[str, str]:
    """name -> sha256 of what the run holds now: each exported artifact (manifest) and ``keras`` (``source`` for
    an imported ONNX model)."""
    digests: dict[str, str] = {}
    if run.export_manifest.is_file():
        try:
            digests = {a.name: a.sha256 for a in read_manifest(run).artifacts if a.path and a.sha256}
        except EdgeExportError:
            pass  # an unreadable manifest: nothing exported counts as current
    if run.model.is_file():
        digests[KERAS] = sha256_file(run.model)
    elif run.model_onnx.is_file():
        digests[SOURCE] = sha256_file(run.model_onnx)
    return digests


def stale_bench(run: RunFolder, bench: BenchResult | None = None, digests: dict[str, str] | None = None) -> list[str]:
    """Names of the run's files that ``bench`` (default bench/bench.json) measured and that changed or went since."""
    if bench is None:
        bench = _read(run.bench_json, BenchResult.from_dict)
    if bench is None:
        return []
    digests = current_digests(run) if digests is None else digests
    stale = []
    for row in bench.rows:
        if row.source not in MEASURED_FROM_RUN or row.device != LOCAL:
            continue
        if row.sha256 is None or digests.get(row.name) != row.sha256:
            stale.append(row.name)
    return list(dict.fromkeys(stale))


def stale_dependents(run: RunFolder) -> list[str]:
    """One line per stale thing (bench/, deploy/, package/), with the command that brings it up to date."""
    digests = current_digests(run)
    where = printable(run.root)
    lines = []
    names = stale_bench(run, digests=digests)
    if names:
        lines.append(
            f"bench/bench.json measured {', '.join(names)} as it was before (changed or removed since): "
            f"re-run bench (`edge-export bench {where} --data TEST_DIR`, or `edge-export build`)"
        )
    rec = _read(run.deploy_recommendation, Recommendation.from_dict)
    if rec is not None and rec.artifact and digests.get(rec.artifact) != rec.sha256:
        lines.append(f"deploy/ holds {printable(rec.artifact)} as it was before: re-run `edge-export build`")
    if run.package_dir.is_dir():
        for info_path in sorted(run.package_dir.glob("*/bundle.json")):
            info = _read(info_path)
            name = (info.get("source") or {}).get("artifact") if isinstance(info, dict) else None
            if not isinstance(name, str):
                continue
            shas = {a.get("name"): a.get("sha256") for a in info.get("artifacts") or [] if isinstance(a, dict)}
            if digests.get(name) != shas.get(name):
                lines.append(
                    f"package/{printable(info_path.parent.name)} bundles {printable(name)} as it was before: "
                    f"re-run `edge-export package {where} --artifact {printable(name)}`"
                )
    return lines


def stale_recommendation(run: RunFolder, name: str) -> str | None:
    """Why the build's recommendation ``name`` is stale (its bench numbers or deployed copy are of an older
    file), or None when it is current."""
    digests = current_digests(run)  # once: it reads the manifest and hashes model.keras
    if name in stale_bench(run, digests=digests):
        return f"the build recommended {name} from bench numbers measured before it was re-exported"
    rec = _read(run.deploy_recommendation, Recommendation.from_dict)
    if rec is not None and rec.artifact == name and rec.sha256 is not None:
        if digests.get(name) != rec.sha256:
            return f"the build recommended {name} as it was before it was re-exported"
    return None


def _read(path, reader=None) -> Any:
    """The file through ``reader`` (a record's ``from_dict``), or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        data = read_json(path)
        return reader(data, source=path) if reader is not None else data
    except EdgeExportError:
        return None
