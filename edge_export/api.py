"""The public Python API: what the CLI wraps, usable from a notebook without it.

    from edge_export import build, train, export, bench, package

Every function takes the same typed settings:

- ``config``: a :class:`~edge_export.core.config.Config`, a YAML config path, or ``None`` (the defaults);
- named keywords that are the CLI's flags with underscores (``backbone="mobilenet_v2"`` is
  ``--backbone mobilenet_v2``; the list is :data:`FLAGS`, the one list both use);
- ``overrides``: any other setting by its dotted config key, as a dict (``{"export.formats": "tflite-int8"}``)
  or as ``key=value`` strings (what the CLI takes as arguments).

Precedence: defaults < config < overrides < named keywords. Every setting is checked against the
registries (backbones, formats, stages, providers, bundle flavours) before any work, and a bad one raises
:class:`~edge_export.core.errors.EdgeExportError` naming the value, the flag or key, and the valid ones.

Heavy imports (TensorFlow) happen inside the layers' functions that need them: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_export.benchmarks.suite import BenchOutcome, bench_run
from edge_export.core.atomic import atomic_path
from edge_export.core.config import Config, flatten, load_config, parse_overrides
from edge_export.core.echo import Echo, silent
from edge_export.core.errors import EdgeExportError
from edge_export.core.out_folder import check_not_inside, check_out_folder
from edge_export.core.records.bench import LOCAL, BenchResult
from edge_export.core.records.manifest import ArtifactRecord, Manifest
from edge_export.core.run_folder import RunFolder, TuneFolder
from edge_export.core.run_lock import locked_run
from edge_export.core.tf_env import require_tensorflow
from edge_export.deploy.bundle import package_run
from edge_export.deploy.flavours import get_flavour
from edge_export.deploy.remote import RemoteSettings, bench_on_devices, connect_devices
from edge_export.deploy.ssh import SshDevice
from edge_export.export.exporter import export_run
from edge_export.export.formats import resolve_formats
from edge_export.export.manifest import read_manifest
from edge_export.export.user_model import KERAS_SUFFIXES, source_kind
from edge_export.pipeline.runner import build as run_build
from edge_export.pipeline.stages import STAGES
from edge_export.runtime.backends.onnx_runtime import check_providers
from edge_export.trainer.backbones import get_backbone
from edge_export.trainer.run import prepare_dataset, train_run
from edge_export.tuning.relative import check_reference
from edge_export.tuning.search import tune as run_tune

ConfigLike = Config | str | Path | None
Overrides = Mapping[str, Any] | Sequence[str] | None


# ------------------------------------------------------------------------------------------- the flags


@dataclass(frozen=True)
class Flag:
    """One setting with a name of its own: a keyword of the API and a ``--flag`` of the CLI."""

    name: str  # the API keyword; the CLI option is --name-with-dashes unless ``option`` says otherwise
    key: str  # the dotted config key it sets
    help: str
    type: Any = str  # int, float, bool (a --x/--no-x pair), str, or a tuple of choices
    option: str | None = None

    @property
    def cli(self) -> str:
        return self.option or "--" + self.name.replace("_", "-")


FLAGS: dict[str, Flag] = {
    f.name: f
    for f in (
        Flag(
            "data",
            "data.path",
            "Dataset folder (train/, validation/, test/) or the name of a data set in "
            "$EDGE_EXPORT_DATA_DIR [cats_vs_dogs].",
        ),
        Flag("backbone", "model.backbone", "Backbone name (see `edge-export backbones`)."),
        Flag("image_size", "model.image_size", "Input size in pixels (square) [the backbone's].", int),
        Flag("weights", "model.weights", "imagenet, none, or a weights file."),
        Flag("seed", "train.seed", "Random seed of training.", int),
        Flag("batch_size", "train.batch_size", "Training batch size.", int),
        Flag(
            "feature_mode",
            "train.feature_extraction.mode",
            "Stage 1: cached features or augmentation.",
            ("cached", "augmented"),
        ),
        Flag("fine_tune", "train.fine_tune.enabled", "Run stage 2 (fine-tuning).", bool),
        Flag(
            "validation_split",
            "data.validation_split",
            "Fraction of train/ held out when there is no validation/.",
            float,
        ),
        Flag(
            "model",
            "model.source",
            "Export this model instead of training one: a .keras, .h5, SavedModel folder "
            "or .onnx (bring your own model; a keras.Model too, in Python).",
        ),
        Flag(
            "input_scale",
            "model.input_scale",
            "What --model expects from pixels [auto: checked on validation photos].",
            ("auto", "0-255", "0-1", "-1-1", "imagenet"),
        ),
        Flag(
            "output",
            "model.output",
            "What --model outputs [auto: its last layer, else checked on validation photos].",
            ("auto", "softmax", "logits", "sigmoid", "sigmoid-logit"),
        ),
        Flag(
            "labels",
            "model.labels",
            "Labels file of --model, one class a line in its output order [the data's class folders].",
        ),
        Flag(
            "custom_objects",
            "model.custom_objects",
            "Comma-separated modules (or .py files) registering --model's custom layers.",
        ),
        Flag("formats", "export.formats", "Comma-separated formats, a family (tflite, onnx) or all [export.formats]."),
        Flag("stages", "build.stages", "Comma-separated subset of train,export,bench."),
        Flag(
            "min_accuracy",
            "bench.min_accuracy",
            "Fail (exit 1) if an artifact's test accuracy is below this fraction "
            "(e.g. 0.985; the Keras reference is not gated).",
            float,
        ),
        Flag("accuracy_budget", "build.accuracy_budget", "Recommendation: max points below the Keras model.", float),
        Flag("max_size_mb", "build.max_size_mb", "Recommendation: max artifact size.", float),
        Flag("threads", "bench.threads", "Comma-separated thread counts, 0 = all cores [1,0]."),
        Flag("runs", "bench.runs", "Timed single-image runs per model and thread count [100].", int),
        Flag("warmup", "bench.warmup", "Untimed runs before timing [10].", int),
        Flag("bench_batch_size", "bench.batch_size", "Images per call for throughput [8].", int, option="--batch-size"),
    )
}

# which flags each command takes (the CLI adds its options from these lists; the API accepts the same names)
TRAIN_FLAGS = (
    "data",
    "backbone",
    "image_size",
    "weights",
    "seed",
    "batch_size",
    "feature_mode",
    "fine_tune",
    "validation_split",
)
EXPORT_FLAGS = ("formats",)
BENCH_FLAGS = ("threads", "runs", "warmup", "bench_batch_size", "min_accuracy")
MODEL_FLAGS = ("model", "input_scale", "output", "labels", "custom_objects")  # bring your own model
BUILD_FLAGS = TRAIN_FLAGS + MODEL_FLAGS + ("formats", "stages", "min_accuracy", "accuracy_budget", "max_size_mb")

# how a flag is named in errors: as an API keyword (default) or, while the CLI runs, as the option typed
_SPELLING: contextvars.ContextVar[str] = contextvars.ContextVar("edge_export_flag_spelling", default="api")


@contextlib.contextmanager
def cli_spelling() -> Iterator[None]:
    """Within this block, errors name settings by their CLI option (``--stages``), not ``stages=``."""
    token = _SPELLING.set("cli")
    try:
        yield
    finally:
        _SPELLING.reset(token)


def _spell(flag: Flag) -> str:
    return flag.cli if _SPELLING.get() == "cli" else f"{flag.name}="


# --------------------------------------------------------------------------------- resolve and check


def resolve_config(
    config: ConfigLike = None, overrides: Overrides = None, *, flags: Sequence[str] = tuple(FLAGS), **settings: Any
) -> Config:
    """The typed config: ``config`` < ``overrides`` (dotted keys) < ``settings`` (flag names), checked.

    ``flags`` limits which flag names are accepted (a command's own list). Raises EdgeExportError naming
    the flag or key of a bad value.
    """
    merged = parse_overrides(dict(overrides) if isinstance(overrides, Mapping) else list(overrides or []))
    names: dict[str, str] = {}  # dotted key -> how the user spelled it
    for name, value in settings.items():
        flag = FLAGS.get(name)
        if flag is None or name not in flags:
            raise EdgeExportError(
                f"unknown setting {name!r}",
                hint=f"use one of: {', '.join(flags)}, or overrides={{'section.key': value}} for any config key",
            )
        if value is None:
            continue
        if isinstance(value, (list, tuple)) and flag.key in ("export.formats", "build.stages", "bench.threads"):
            value = list(value)
        merged[flag.key] = value
        names[flag.key] = _spell(flag)
    try:
        resolved = load_config(config, merged)  # a Config, a YAML path or None (the defaults)
        check_settings(resolved)
    except EdgeExportError as exc:
        raise _named(exc, names) from None
    return resolved


def _named(exc: EdgeExportError, names: dict[str, str]) -> EdgeExportError:
    """The error with a setting's dotted key replaced by the flag the user typed (the first one it names)."""
    for key, spelled in names.items():
        if key in exc.message or (exc.hint and key in exc.hint):
            message = exc.message.replace(key, spelled) if key in exc.message else f"{spelled}: {exc.message}"
            hint = exc.hint
            if hint == f"set {key} in the config or with {key}=VALUE":  # core.config's generic hint
                hint = f"give {spelled} a valid value"
            elif hint:
                hint = hint.replace(key, spelled)
            return EdgeExportError(message, path=exc.path, hint=hint)
    return exc


def check_settings(config: Config) -> None:
    """Every name a registry owns, asked of that registry, before any work (registries stay the only lists).

    Errors name the config key (``resolve_config`` renames it to the flag the user typed).
    """

    def named(key: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except EdgeExportError as exc:
            raise EdgeExportError(f"{key}: {exc.message}", path=exc.path, hint=exc.hint) from None

    if not config.model.source:  # bring your own model: build checks its file (a run folder's export needs none)
        spec = named("model.backbone", lambda: get_backbone(config.model.backbone))
        if config.model.image_size is not None:
            named("model.image_size", lambda: spec.check_size(config.model.image_size, config.model.weights))
    named("export.formats", lambda: resolve_formats(config.export.formats))
    known = [s.name for s in STAGES]
    unknown = [s for s in config.build.stages if s not in known]
    if unknown:
        raise EdgeExportError(
            f"build.stages: unknown stage {', '.join(map(repr, unknown))}", hint=f"choose from: {', '.join(known)}"
        )


def check_flavour(flavour: str) -> None:
    get_flavour(flavour)


# ------------------------------------------------------------------------------------------- results


@dataclass
class TrainResult:
    run: RunFolder
    metrics: dict  # metrics.json: validation (and test) accuracy and loss, timings


@dataclass
class ExportResult:
    run: RunFolder
    manifest: Manifest  # export/manifest.json (core.records.manifest)
    failed: list[ArtifactRecord]  # this export's artifacts that failed (conversion error or accuracy drop)

    @property
    def ok(self) -> bool:
        return not self.failed


# ------------------------------------------------------------------------------------------- the verbs


def train(
    config: ConfigLike = None,
    *,
    out: str | Path | None = None,
    overrides: Overrides = None,
    echo: Echo | None = print,
    **settings: Any,
) -> TrainResult:
    """Train a classifier by transfer learning into the run folder ``out`` [runs/train-<time>]."""
    echo = echo or silent
    resolved = resolve_config(config, overrides, flags=TRAIN_FLAGS, **settings)
    run = RunFolder(out) if out else RunFolder.new_default()
    check_out_folder(run.root)
    check_not_inside(run.root, resolved.data.path)
    require_tensorflow("train")
    dataset = prepare_dataset(resolved)
    echo(f"dataset: {dataset.root}")
    echo(dataset.counts_table())
    echo(f"run folder: {run.root}")
    with locked_run(run):
        metrics = train_run(resolved, run, dataset)
    return TrainResult(run=run, metrics=metrics)


def export_config(run: RunFolder, config: ConfigLike = None, overrides: Overrides = None, **settings: Any) -> Config:
    """defaults < the run's config.yaml < ``config`` (only what it sets) < overrides < flags."""
    merged: dict = {}
    if config is not None:
        given = config if isinstance(config, Config) else load_config(config)
        flat = flatten(given.to_dict())
        own = (lambda k: given.sources.get(k) not in (None, "default")) if given.sources else (lambda k: True)
        merged.update({k: v for k, v in flat.items() if own(k)})
    merged.update(parse_overrides(dict(overrides) if isinstance(overrides, Mapping) else list(overrides or [])))
    return resolve_config(run.config if run.config.is_file() else None, merged, flags=EXPORT_FLAGS, **settings)


def export(
    run: str | Path | RunFolder,
    config: ConfigLike = None,
    *,
    overrides: Overrides = None,
    echo: Echo | None = print,
    debug: bool = False,
    **settings: Any,
) -> ExportResult:
    """Export the model of the run folder ``run`` to ``run/export/`` (formats: ``formats=`` or the config's).

    ``run`` may also be a user's model (a .keras/.h5 file, a SavedModel folder, a keras.Model, an .onnx file): it
    is imported with ``data=`` (photos for calibration and the checks) into ``out=`` [runs/<its name>], then
    exported (an .onnx file to the ONNX formats).
    """
    echo = echo or silent
    if is_model_source(run, onnx=True):
        out = settings.pop("out", None) or default_out(run)
        if settings.get("data") is None:
            raise EdgeExportError(
                "exporting a model file needs photos: --data DIR (calibration and the checks)",
                hint="DIR/{train,validation,test}/<class>/*.jpg, or DIR/<class>/*.jpg (split by the tool)",
            )
        build(
            config,
            out=out,
            overrides=overrides,
            echo=echo,
            debug=debug,
            model=run,
            stages=["train", "export"],
            **settings,
        )
        folder = RunFolder(out)
        return _export_result(folder, read_manifest(folder))
    settings.pop("out", None)
    for name in ("data", *MODEL_FLAGS):
        if settings.pop(name, None) is not None:
            raise EdgeExportError(
                f"{_spell(FLAGS[name])} is for exporting a model file, not a run folder",
                hint="a run folder exports with the data and model it was made with",
            )
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    if not run.root.is_dir():
        raise EdgeExportError("run folder not found", path=run.root, hint="pass the folder `edge-export train` wrote")
    run.verify()  # before its config.yaml is read: model.keras and every file beside it are from one train
    resolved = export_config(run, config, overrides, **settings)
    require_tensorflow("export")  # before any work: nothing below runs without it
    echo(f"exporting {run.model} -> {run.export_dir}")
    with locked_run(run):
        manifest = export_run(run, resolved.export, run_config=resolved, echo=echo, debug=debug)
    return _export_result(run, manifest)


def _export_result(run: RunFolder, manifest: Manifest) -> ExportResult:
    made = set(manifest.formats)  # this export's formats (the manifest may keep earlier ones)
    return ExportResult(
        run=run, manifest=manifest, failed=[a for a in manifest.artifacts if a.name in made and not a.ok]
    )


def bench(
    run: str | Path | RunFolder | None = None,
    models: Sequence[str | Path] = (),
    *,
    data: str | Path,
    config: ConfigLike = None,
    out: str | Path | None = None,
    labels: str | Path | None = None,
    keras: bool | None = None,
    devices: Sequence[str] = (),
    remote: Any = None,
    providers: Sequence[str] = (),
    overrides: Overrides = None,
    echo: Echo | None = print,
    **settings: Any,
):
    """Benchmark a run folder's exported artifacts and/or model files on the test images in ``data``.

    ``devices``: ``ssh://[USER@]HOST[:PORT]`` to measure on too (``remote``: a RemoteSettings for them).
    ``providers``: ONNX Runtime execution providers (cpu, cuda, tensorrt) for the .onnx models, checked first.
    Returns the bench outcome: ``.result`` (the typed ``BenchResult``: rows, devices...), ``.ok``, ``.out_dir``.
    """
    echo = echo or silent
    sources = [m for m in [run, *models] if is_model_source(m)]
    if sources:  # a user's Keras model: imported into a run folder, then benchmarked there (its Keras row)
        return _bench_model_source(
            sources,
            run,
            models,
            data=data,
            config=config,
            out=out,
            overrides=overrides,
            labels=labels,
            echo=echo,
            **settings,
        )
    resolved = resolve_config(config, overrides, flags=BENCH_FLAGS, **settings)
    if out is not None:
        check_out_folder(out)
    if providers:
        check_providers(providers)
    ssh_devices = parse_devices(devices)
    if ssh_devices:  # every device answers (ssh, login, Python) before any local work
        remote = remote or RemoteSettings()
        ssh_devices = connect_devices(ssh_devices, remote)
    folder = None if run is None else (run if isinstance(run, RunFolder) else RunFolder(run))
    # writing RUN/bench: one writer per run folder (a run folder only read, with --out elsewhere, is not locked)
    with locked_run(folder) if folder is not None and out is None else contextlib.nullcontext():
        outcome = bench_run(
            folder,
            models=list(models),
            data=data,
            config=resolved.bench,
            out=out,
            labels=labels,
            keras=keras,
            echo=echo,
            max_image_pixels=resolved.data.max_image_pixels,
            providers=list(providers) or None,
        )
        if ssh_devices:
            outcome = bench_on_devices(
                outcome,
                ssh_devices,
                data=data,
                config=resolved.bench,
                settings=remote,
                labels=labels,
                run=folder,
                echo=echo,
            )
    return outcome


def _bench_model_source(
    sources: list,
    run: Any,
    models: Sequence[Any],
    *,
    data: str | Path,
    config: ConfigLike,
    out: str | Path | None,
    overrides: Overrides,
    labels: str | Path | None,
    echo: Echo,
    **settings: Any,
):
    """``bench FILE.keras --data DIR``: import the model with DIR's photos (its splits, or the tool's split of a
    folder with none) into ``out`` [runs/<name>] and benchmark it on DIR's test photos. One model at a time."""
    others = [m for m in [run, *models] if m is not None and not is_model_source(m)]
    if len(sources) > 1 or others:
        raise EdgeExportError(
            "a Keras model or SavedModel is benchmarked alone (it is imported into a run folder first)",
            hint="bench it on its own, then bench the run folder with the other models",
        )
    folder = Path(out) if out is not None else default_out(sources[0])
    resolved = resolve_config(config, overrides, flags=BENCH_FLAGS, **settings)  # bench's flags, checked as bench's
    build(
        resolved,
        out=folder,
        echo=echo,
        model=sources[0],
        data=str(data),
        stages=["train", "bench"],
        labels=None if labels is None else str(labels),
    )
    folder_run = RunFolder(folder)
    table = folder_run.bench_md.read_text(encoding="utf-8") if folder_run.bench_md.is_file() else ""
    return BenchOutcome(result=BenchResult.read(folder_run.bench_json), out_dir=folder_run.bench_dir, table=table)


def parse_devices(values: Sequence[str], option: str = "--device") -> list:
    """``--device`` values -> the SSH devices (``local`` is always measured); checked before any work."""
    devices: list = []
    for value in values:
        if value.strip() == LOCAL:
            continue
        device = SshDevice.parse(value.strip())
        if device.name in {d.name for d in devices}:
            raise EdgeExportError(f"{option} {value} is given twice")
        devices.append(device)
    return devices


def build(
    config: ConfigLike = None,
    *,
    out: str | Path = "runs/build",
    force: bool = False,
    overrides: Overrides = None,
    echo: Echo | None = print,
    event: Callable[[dict], None] | None = None,
    debug: bool = False,
    command: str = "",
    **settings: Any,
):
    """Train, export and benchmark into the run folder ``out`` (resumable), then report and recommend.

    Returns the build result (``.ok``, ``.ran``, ``.skipped``, ``.failures``, ``.recommendation``, ``.reports``).

    ``model=`` (bring your own model): a .keras/.h5 file, a SavedModel folder, an .onnx file or an in-memory
    ``keras.Model`` (saved first as ``out/source_model.keras``) is imported in place of training; the stages after
    it run as for a trained model (for an .onnx file: its ONNX formats; the TFLite ones are skipped, with why).
    """
    check_out_folder(out)
    if isinstance(settings.get("model"), Path):
        settings["model"] = str(settings["model"])
    elif settings.get("model") is not None and not isinstance(settings["model"], str):
        settings["model"] = str(_save_model_object(settings["model"], Path(out)))
    resolved = resolve_config(config, overrides, flags=BUILD_FLAGS, **settings)
    check_not_inside(out, resolved.data.path)
    if resolved.model.source and "train" in resolved.build.stages:  # the file, before any work (its contents: later)
        try:
            source_kind(Path(resolved.model.source).expanduser())
        except EdgeExportError as exc:
            raise _named(exc, {"model.source": _spell(FLAGS["model"])}) from None
    if {"train", "export"} & set(resolved.build.stages):
        require_tensorflow("build")
    with locked_run(RunFolder(out), command) as run:
        return run_build(
            resolved,
            run,
            force=force,
            command=command or "edge_export.build()",
            echo=echo or silent,
            event=event,
            debug=debug,
        )


def _save_model_object(model: Any, out: Path) -> Path:
    """An in-memory keras.Model given as ``model=``, saved where the build can import it (and hash it)."""
    if not (hasattr(model, "save") and hasattr(model, "inputs") and hasattr(model, "outputs")):
        raise EdgeExportError(
            f"model= is a {type(model).__name__}, not a model",
            hint="pass a keras.Model, or the path of a .keras, .h5 or SavedModel folder",
        )
    out.mkdir(parents=True, exist_ok=True)
    path = out / "source_model.keras"
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def is_model_source(target: Any, onnx: bool = False) -> bool:
    """A user's model rather than a run folder: a keras.Model, a .keras/.h5 file, or a SavedModel folder; with
    ``onnx``, an .onnx file too (export imports one; bench measures an .onnx file as it is)."""
    if target is None or isinstance(target, RunFolder):
        return False
    if not isinstance(target, (str, Path)):
        return hasattr(target, "save") and hasattr(target, "inputs")
    path = Path(target)
    return (
        path.suffix.lower() in KERAS_SUFFIXES
        or (onnx and path.suffix.lower() == ".onnx")
        or (path.is_dir() and (path / "saved_model.pb").is_file())
    )


def default_out(model: Any) -> Path:
    """runs/<model file's stem> for a model given without --out."""
    stem = Path(model).stem if isinstance(model, (str, Path)) else getattr(model, "name", "model")
    return Path("runs") / (stem or "model")


def tune(
    config: ConfigLike = None,
    *,
    out: str | Path = "runs/tune",
    overrides: Overrides = None,
    device: str | None = None,
    max_latency_ms: float | None = None,
    max_size_mb: float | None = None,
    min_accuracy: float | None = None,
    budget_minutes: float | None = None,
    build_chosen: bool = False,
    faster_than: str | Path | None = None,
    max_latency_ratio: float | None = None,
    distill: str | Path | None = None,
    remote: Any = None,
    measure: Any = None,
    echo: Echo | None = print,
    event: Callable[[dict], None] | None = None,
    **settings: Any,
):
    """Search backbones x sizes x fine-tune depths x precisions (the ``tune`` config section) for the fastest
    model within the limits on ``device`` (local or ssh://), into ``out`` (resumable). ``build_chosen``
    then builds the chosen config into ``out/build``. Returns the ``TuneResult`` (tune.json); with
    ``build_chosen``, (the TuneResult, the build result). ``remote``: a RemoteSettings for an ssh:// device.
    ``measure``: a latency function (backbone, size, precisions) -> records, instead of the device (tests).
    ``faster_than``: a .tflite/.onnx model timed with every candidate (tune.latency_reference); candidates are
    then limited by their latency ratio to it (``max_latency_ratio``, default 1.0). ``distill``: "auto" or a
    teacher's run folder (tune.distill): the frontier's models are also trained from its soft targets."""
    merged = parse_overrides(dict(overrides) if isinstance(overrides, Mapping) else list(overrides or []))
    for key, value in (
        ("device", device),
        ("max_latency_ms", max_latency_ms),
        ("max_size_mb", max_size_mb),
        ("min_accuracy", min_accuracy),
        ("budget_minutes", budget_minutes),
        ("latency_reference", None if faster_than is None else str(faster_than)),
        ("max_latency_ratio", max_latency_ratio),
        ("distill", None if distill is None else str(distill)),
    ):
        if value is not None:
            merged[f"tune.{key}"] = value
    resolved = resolve_config(config, merged, flags=TRAIN_FLAGS, **settings)
    if resolved.tune.device.strip() != "local":
        parse_devices([resolved.tune.device], option="--device")  # a bad address fails before any work
    if resolved.tune.latency_reference is not None:
        check_reference(resolved.tune.latency_reference)  # before any work
    if resolved.tune.distill not in (None, "auto"):
        RunFolder(Path(resolved.tune.distill).expanduser()).verify()  # a finished teacher, before any work
    check_out_folder(out)
    check_not_inside(out, resolved.data.path)
    require_tensorflow("tune")
    folder = TuneFolder(out)
    with locked_run(RunFolder(out)):
        result = run_tune(resolved, folder, measure=measure, echo=echo or silent, event=event, remote=remote)
    if build_chosen:
        if result.chosen is None:
            raise EdgeExportError(f"--build: no candidate was chosen ({result.why})", path=folder.result)
        return result, build(folder.chosen_config, out=folder.build_dir, echo=echo, event=event)
    return result


def package(
    run: str | Path | RunFolder,
    *,
    artifact: str | None = None,
    flavour: str = "cpu",
    out: str | Path | None = None,
    echo: Echo | None = print,
):
    """Bundle one exported artifact of ``run`` for a device ``flavour`` (cpu, rpi, jetson): folder + .tar.gz."""
    check_flavour(flavour)
    if out is not None:
        check_out_folder(out)
    folder = run if isinstance(run, RunFolder) else RunFolder(run)
    if not folder.root.is_dir():
        raise EdgeExportError("run folder not found", path=folder.root, hint="pass a folder `edge-export build` wrote")
    # writing RUN/package: one writer per run folder (with --out elsewhere the run folder is only read)
    with locked_run(folder) if out is None else contextlib.nullcontext():
        return package_run(folder, artifact=artifact, flavour=flavour, out=out, echo=echo)


def quiet_logging(quiet: bool) -> None:
    """INFO lines of the layers (training progress) on stderr, or only warnings."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")


__all__ = [
    "FLAGS",
    "Flag",
    "ExportResult",
    "TrainResult",
    "bench",
    "build",
    "check_settings",
    "export",
    "package",
    "resolve_config",
    "train",
    "tune",
]
