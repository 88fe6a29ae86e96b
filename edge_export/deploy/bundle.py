"""``edge-export package``: a self-contained bundle for a device, as a folder and a ``.tar.gz`` of it.

    <artifact>-<flavour>/
      README.md           how to install and run it on the device (flavour notes: Pi, Jetson)
      bundle.json         what is inside: models with sha256, flavour, versions, entry point
      run.py              entry point: ``python run.py predict IMAGE...`` / ``python run.py bench --data DIR``
      requirements.txt    pinned runtime: numpy, Pillow, click, PyYAML + ai-edge-litert or onnxruntime
      labels.txt, model_card.json
      models/<artifact>.tflite|.onnx
      wheels/edge_export-<version>-py3-none-any.whl

Both the folder and the archive are written atomically (temporary name, then rename). ``BundleLayout``
owns the file names; ``build_bundle`` writes any list of models (the remote benchmark bundles several),
``package_run`` picks the artifact of a run folder and writes its bundle.
"""

from __future__ import annotations

import json
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from edge_export.core import __version__
from edge_export.core.atomic import atomic_path, copy_file
from edge_export.core.echo import Echo  # noqa: E402  (the one Echo type)
from edge_export.core.errors import EdgeExportError
from edge_export.core.hashing import sha256_file
from edge_export.core.records.manifest import ArtifactRecord
from edge_export.core.records.recommendation import read_recommendation
from edge_export.core.run_folder import RunFolder
from edge_export.core.untrusted import path_inside, read_json, safe_name
from edge_export.deploy.flavours import get_flavour, pinned_requirements
from edge_export.deploy.wheel import build_wheel
from edge_export.export.dependents import stale_recommendation
from edge_export.export.layout import ExportFolder
from edge_export.export.manifest import check_made_from, read_manifest
from edge_export.runtime.backends import FAMILIES
from edge_export.runtime.metadata import read_model_metadata

BUNDLE_VERSION = 1
DEFAULT_ARTIFACT = "tflite-int8"


class BundleLayout:
    """The one owner of the file names inside a bundle."""

    README = "README.md"
    INFO = "bundle.json"
    RUN = "run.py"
    REQUIREMENTS = "requirements.txt"
    LABELS = "labels.txt"
    MODEL_CARD = "model_card.json"
    MODELS = "models"
    WHEELS = "wheels"

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def readme(self) -> Path:
        return self.root / self.README

    @property
    def info(self) -> Path:
        return self.root / self.INFO

    @property
    def run(self) -> Path:
        return self.root / self.RUN

    @property
    def requirements(self) -> Path:
        return self.root / self.REQUIREMENTS

    @property
    def labels(self) -> Path:
        return self.root / self.LABELS

    @property
    def model_card(self) -> Path:
        return self.root / self.MODEL_CARD

    @property
    def models(self) -> Path:
        return self.root / self.MODELS

    @property
    def wheels(self) -> Path:
        return self.root / self.WHEELS

    def model(self, filename: str) -> Path:
        return self.models / filename

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def read_info(self) -> dict[str, Any]:
        """bundle.json, checked: every artifact's name and every path in it stay inside the bundle."""
        if not self.info.is_file():
            raise EdgeExportError(
                "not an edge-export bundle (no bundle.json)",
                path=self.info,
                hint="pass a folder made by `edge-export package`",
            )
        info = read_json(self.info, what="bundle.json")
        artifacts = info.get("artifacts") if isinstance(info, dict) else None
        if not isinstance(artifacts, list) or not artifacts:
            raise EdgeExportError(
                "not an edge-export bundle (no list of artifacts)",
                path=self.info,
                hint="pass a folder made by `edge-export package`",
            )
        for entry in artifacts:
            record = ArtifactRecord.from_dict(entry, folder=self.root, source=self.info)
            if record.path is None:
                raise EdgeExportError(f"artifact {record.name} has no path", path=self.info)
        for key in ("wheel", "requirements", "labels", "model_card"):
            if info.get(key) is not None or key in ("wheel", "requirements"):
                path_inside(self.root, info.get(key), what=key, source=self.info)
        return info


@dataclass(frozen=True)
class BundleModel:
    name: str  # the artifact name; the bundled file is models/<name><suffix>
    path: Path  # the source file
    precision: str | None = None
    sha256: str | None = None  # expected (from the export manifest); checked when given

    @property
    def family(self) -> str:
        return FAMILIES[self.path.suffix.lower()]

    @property
    def filename(self) -> str:
        return f"{self.name}{self.path.suffix.lower()}"


@dataclass
class PackageResult:
    folder: Path
    archive: Path
    info: dict[str, Any]
    reason: str  # why this artifact


def bundle_name(artifact: str, flavour: str) -> str:
    return f"{artifact}-{flavour}"


# ----------------------------------------------------------------------------- a run folder -> bundle


def package_run(
    run: RunFolder | str | Path,
    *,
    artifact: str | None = None,
    flavour: str = "cpu",
    out: str | Path | None = None,
    wheel: str | Path | None = None,
    echo: Echo | None = print,
) -> PackageResult:
    """Bundle one exported artifact of ``run`` for ``flavour`` into ``out`` (default ``RUN_DIR/package``).

    ``artifact`` defaults to the build's recommendation, else tflite-int8. ``wheel``: an edge-export
    wheel to reuse (default: built now). Raises EdgeExportError before writing when inputs are unusable.
    """
    echo = echo or (lambda line: None)
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    get_flavour(flavour)
    export = ExportFolder(run)
    entries = _manifest_artifacts(run)
    name, reason = choose_artifact(run, entries, artifact)
    entry = entries[name]
    assert entry.path is not None  # _manifest_artifacts keeps only artifacts with a file
    model = BundleModel(name, export.root / entry.path, entry.precision, entry.sha256)
    labels = export.labels if export.labels.is_file() else run.labels
    if not labels.is_file():
        raise EdgeExportError("labels.txt is missing", path=export.labels, hint="re-run `edge-export export`")
    card = export.model_card if export.model_card.is_file() else None
    if card is None:
        echo(f"warning: no {export.model_card.name} in {export.root}; the bundle goes without it")
    out_dir = Path(out) if out is not None else run.package_dir
    folder = out_dir / bundle_name(name, flavour)
    echo(f"packaging {name} ({reason}) for {flavour}")
    info = build_bundle(
        folder,
        [model],
        flavour=flavour,
        labels=labels,
        model_card=card,
        wheel=wheel,
        source={"run_dir": str(run.root.resolve()), "artifact": name, "why": reason},
    )
    archive = write_archive(folder)
    echo(f"wrote {folder}/ and {archive}")
    return PackageResult(folder=folder, archive=archive, info=info, reason=reason)


def _manifest_artifacts(run: RunFolder) -> dict[str, ArtifactRecord]:
    """The exported artifacts that passed, by name."""
    manifest = read_manifest(run, hint="run `edge-export export` (or `edge-export build`) on it first")
    check_made_from(run, run.verify(), manifest)  # one train's files, and an export of that train's model.keras
    return {a.name: a for a in manifest.artifacts if a.ok and a.path}


def choose_artifact(run: RunFolder, entries: dict[str, ArtifactRecord], requested: str | None) -> tuple[str, str]:
    """(artifact name, why): the requested one, else the build's recommendation, else tflite-int8."""
    available = ", ".join(entries) or "none"
    if requested is not None:
        if requested not in entries:
            raise EdgeExportError(
                f"no exported artifact {requested!r} in this run (exported ok: {available})",
                path=run.export_manifest,
                hint="pass --artifact with one of those names",
            )
        return requested, "--artifact"
    recommended = _recommended(run)
    if recommended is not None:
        if recommended in entries:
            stale = stale_recommendation(run, recommended)
            if stale:
                raise EdgeExportError(
                    f"stale: {stale}",
                    path=run.bench_dir,
                    hint="re-run bench (`edge-export build`), or pass --artifact NAME",
                )
            return recommended, "the build's recommendation"
        raise EdgeExportError(
            f"the build recommends {recommended!r} but the export has no such artifact (exported ok: {available})",
            path=run.export_manifest,
            hint="re-run `edge-export build`, or pass --artifact NAME",
        )
    if DEFAULT_ARTIFACT in entries:
        return DEFAULT_ARTIFACT, "default: no build recommendation"
    raise EdgeExportError(
        f"no recommendation and no {DEFAULT_ARTIFACT} artifact to default to (exported ok: {available})",
        path=run.root,
        hint="pass --artifact NAME",
    )


def _recommended(run: RunFolder) -> str | None:
    """report.json's recommendation, else what ``build`` copied to deploy/."""
    recommendation = read_recommendation(run)  # the one reader; an unreadable file counts as absent
    if recommendation is not None:
        return recommendation.artifact
    deploy = run.deploy_dir
    models = sorted(p.stem for p in deploy.glob("*") if p.suffix in FAMILIES) if deploy.is_dir() else []
    return models[0] if len(models) == 1 else None


# ----------------------------------------------------------------------------- writing


def build_bundle(
    folder: str | Path,
    models: Sequence[BundleModel],
    *,
    flavour: str = "cpu",
    labels: str | Path | None = None,
    model_card: str | Path | None = None,
    wheel: str | Path | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the bundle folder (atomically, replacing an old one) and return its bundle.json contents."""
    folder = Path(folder)
    spec = get_flavour(flavour)
    if not models:
        raise EdgeExportError("nothing to bundle", hint="pass at least one model")
    for m in models:
        safe_name(m.name, what="model name")
        if not m.path.is_file():
            raise EdgeExportError("model file not found", path=m.path, hint="re-run `edge-export export`")
        if m.path.suffix.lower() not in FAMILIES:
            raise EdgeExportError(
                f"not a model file ({m.path.suffix!r})", path=m.path, hint="bundle .tflite or .onnx files"
            )
    names = [m.filename for m in models]
    if len(set(names)) != len(names):
        raise EdgeExportError(f"two models would share a file name in the bundle: {names}")
    pins = pinned_requirements((m.family for m in models), decoders=[_decoder(m.path) for m in models])
    with atomic_path(folder, suffix="") as tmp:
        layout = BundleLayout(tmp)
        layout.models.mkdir(parents=True)
        artifacts = []
        for m in models:
            dest = copy_file(m.path, layout.model(m.filename))
            digest = sha256_file(dest)
            if m.sha256 and m.sha256 != digest:
                raise EdgeExportError(
                    f"{m.name} does not match the sha256 in the export manifest (changed since the export?)",
                    path=m.path,
                    hint="re-run `edge-export export`",
                )
            artifacts.append(
                {
                    "name": m.name,
                    "path": layout.relative(dest),
                    "format": m.family,
                    "precision": m.precision,
                    "size_bytes": dest.stat().st_size,
                    "sha256": digest,
                }
            )
        if wheel is not None:
            whl = copy_file(wheel, layout.wheels / Path(wheel).name)
        else:
            whl = build_wheel(layout.wheels)
        if labels is not None:
            copy_file(labels, layout.labels)
        if model_card is not None:
            copy_file(model_card, layout.model_card)
        layout.requirements.write_text(_requirements_text(pins, flavour))
        layout.run.write_text(resources.files("edge_export.deploy").joinpath("bundle_main.py").read_text())
        layout.run.chmod(layout.run.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        info = {
            "bundle_version": BUNDLE_VERSION,
            "edge_export": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "target": flavour,
            "target_description": spec.description,
            "artifacts": artifacts,
            "labels": BundleLayout.LABELS if labels is not None else None,
            "model_card": BundleLayout.MODEL_CARD if model_card is not None else None,
            "requirements": BundleLayout.REQUIREMENTS,
            "pinned": pins,
            "wheel": layout.relative(whl),
            "wheel_sha256": sha256_file(whl),  # run.py checks it (and each model's sha256) before it runs
            "python_requires": ">=3.10",
            "entry_point": BundleLayout.RUN,
            "source": source or {},
        }
        layout.readme.write_text(render_readme(info, spec.notes, folder.name))
        layout.info.write_text(json.dumps(info, indent=2) + "\n")  # last: a bundle.json means a whole bundle
    return info


def write_archive(folder: str | Path, archive: str | Path | None = None) -> Path:
    """``folder`` as ``<folder>.tar.gz`` next to it (one top-level folder inside), written atomically."""
    folder = Path(folder)
    archive = Path(archive) if archive is not None else folder.with_name(folder.name + ".tar.gz")

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with atomic_path(archive, suffix=".tar.gz") as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(folder, arcname=folder.name, filter=clean)
    return archive


def _requirements_text(pins: list[str], flavour: str) -> str:
    return (
        f"# edge-export {__version__} runtime for flavour {flavour}: "
        "pinned to the versions the model was checked with.\n"
        "# No TensorFlow. Install: python -m pip install -r requirements.txt wheels/*.whl\n" + "\n".join(pins) + "\n"
    )


def render_readme(info: dict[str, Any], notes: str, name: str) -> str:
    first = info["artifacts"][0]
    models = "\n".join(
        f"| `{a['path']}` | {a['format']} | {a.get('precision') or '-'} | {a['size_bytes']:,} "
        f"| `{a['sha256'][:16]}...` |"
        for a in info["artifacts"]
    )
    labels = f" --labels {info['labels']}" if info.get("labels") else ""
    return f"""# {name}: edge-export bundle for {info["target"]}

Made by edge-export {info["edge_export"]} on {info["created"]} for: {info["target_description"]}.

| model | format | precision | bytes | sha256 |
|---|---|---|---|---|
{models}

Everything runs without TensorFlow: numpy, Pillow, click, PyYAML and one model runtime
(`requirements.txt`, pinned), plus edge-export itself (`{info["wheel"]}`).

## Install (on the device)

```bash
python3 -m venv venv && . venv/bin/activate
python -m pip install -r requirements.txt {info["wheel"]}
```

`run.py` also works without installing the wheel (it imports edge-export from `wheels/`): then only
`requirements.txt` is needed.

## Predict

```bash
python run.py predict IMAGE.jpg [IMAGE2.png ...] [--top-k 3] [--json] [--threads 4]
# a video file, a camera (its index) or a stream URL, frame by frame (needs opencv-python-headless):
python run.py predict clip.mp4 --every 2 --json     # one JSON line per frame, then frames/s and latency
python run.py predict 0 --fps 5                     # camera 0, at most 5 frames a second; Ctrl-C stops
# the same with the installed command:
edge-export predict {first["path"]} IMAGE.jpg{labels}
```

## Benchmark: accuracy and latency on this device

```bash
python run.py bench --data TEST_DIR --out bench   # TEST_DIR/<class>/*.jpg
```

writes `bench/bench.json` and `bench/bench.md`: accuracy, per-class metrics, latency percentiles at each
thread count (`--threads 1,0`, 0 = all cores), throughput, peak memory, and the machine it ran on (CPU
model, cores, OS, Python and library versions). From the development machine, `edge-export bench RUN_DIR
--data TEST_DIR --device ssh://user@device` does all of this over SSH and merges the device's numbers
into the local table.

## Notes for {info["target"]}

{notes}

## Files

`bundle.json` lists the models with their sha256, the pinned requirements and the wheel;
`model_card.json` says what the model is, what it was trained on and how it scored.
"""


def _decoder(path: Path) -> str:
    """The image decoder a model's metadata names (pillow for a model without our metadata)."""
    meta = read_model_metadata(path)
    return meta.preprocessing.decoder if meta is not None and meta.preprocessing is not None else "pillow"
