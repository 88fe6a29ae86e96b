"""Export a trained run folder: every requested format, checked against the Keras model, then the records.

``export_run(run, config)`` is the library call (the ``export`` command and the ``build`` pipeline use it).
A format that fails (converter exception, artifact that does not run, accuracy drop over the budget) is
marked failed and the others continue.

Exporting some formats adds or replaces those formats only: the earlier export's other artifacts stay
when it was made from the same model.keras (the run record's sha256 in its manifest); when the model
changed they belong to an older model and are all removed (and the export says so). Every file is
written atomically and the manifest last; before any file is replaced, the manifest is rewritten to
claim only the artifacts that stay (or removed): an interrupted export never leaves a manifest claiming
a file that is not there, or not the one it lists. What was made from replaced artifacts (bench/,
deploy/, package/) is reported stale (export/dependents.py).
"""

from __future__ import annotations

import gc
import time
import traceback
from pathlib import Path

from edge_export.core.atomic import atomic_path, write_json, write_text
from edge_export.core.config import Config, ExportConfig, load_config
from edge_export.core.echo import Echo  # noqa: E402  (the one Echo type)
from edge_export.core.errors import EdgeExportError
from edge_export.core.hashing import sha256_file
from edge_export.core.native_stderr import native_stderr_captured
from edge_export.core.pause import pause_point
from edge_export.core.records.manifest import ArtifactRecord, Manifest
from edge_export.core.run_folder import RunFolder
from edge_export.export.context import ExportContext, load_converter
from edge_export.export.dependents import stale_dependents
from edge_export.export.formats import FORMATS, FormatSpec, auto_formats, resolve_formats
from edge_export.export.manifest import build_manifest, build_model_card, read_manifest, render_table
from edge_export.export.parity import artifact_probabilities, check_budget, compare


def export_run(
    run: RunFolder | str | Path,
    config: ExportConfig | None = None,
    *,
    run_config: Config | None = None,
    formats: list[str] | str | None = None,
    echo: Echo | None = print,
    debug: bool = False,
) -> Manifest:
    """Export ``run`` to ``run/export/`` and return the manifest (``manifest.ok`` is False if any failed).

    ``config`` defaults to the run's own export settings; ``run_config`` (the run's config.yaml by
    default) says where the training data is; ``formats`` overrides ``config.formats``.
    Raises EdgeExportError before writing anything when the run folder or the data cannot be used.
    """
    started = time.perf_counter()
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    echo = echo or (lambda line: None)
    record = run.verify()  # model.keras, labels.txt, config.yaml ... all from one train
    if run_config is None:
        run_config = load_config(run.config if run.config.is_file() else None)
    config = config or run_config.export
    requested = formats if formats is not None else config.formats
    specs = resolve_formats(requested)
    auto = auto_formats(requested)

    ctx = ExportContext(run, config, run_config, echo, record)
    try:
        why_not = [unavailable_for(fmt, ctx, fmt.name in auto) for fmt in specs]
        if all(why_not):
            first = why_not[0]
            assert first is not None  # all() above
            raise EdgeExportError(
                f"none of the requested formats can be made for this model: {first['reason']}",
                path=run.reference_model,
                hint="request others (--formats onnx for a model imported from ONNX, or all)",
            )
        ctx.check_model()  # a missing or corrupt model fails here, before the export folder is touched
        _ = ctx.dataset  # scanned now: missing training data fails before the export folder is touched
        kept = _start(ctx, specs)
        write_text(ctx.folder.labels, "\n".join(ctx.labels) + "\n")

        images = ctx.parity_images()
        reference = ctx.parity_reference()
        keras_info = {
            "accuracy": float((reference.argmax(axis=1) == images.labels).mean()),
            "images": len(images),
            "split": images.split,
            "sampled": config.parity_images is not None and len(images) < len(ctx.dataset.splits[images.split].files),
        }
        results: list[ArtifactRecord] = []
        decisions: dict[str, dict] = {}
        for i, (fmt, unavailable) in enumerate(zip(specs, why_not), 1):
            step = f"[{i}/{len(specs)}]"
            if unavailable is not None:
                decisions[fmt.name] = unavailable
                echo(f"{step} {fmt.name}: skipped: {unavailable['reason']}")
                continue
            if fmt.name in auto:
                decisions[fmt.name] = decision = auto_qat_decision(ctx.config, [*results, *kept])
                echo(
                    f"{step} {fmt.name}: {'running' if decision['ran'] else 'skipped'} ({fmt.name}:auto): "
                    f"{decision['reason']}"
                )
                if not decision["ran"]:
                    continue
            result = export_one(ctx, fmt, images, reference, step, debug)
            if fmt.name in decisions:
                result.details["auto"] = decisions[fmt.name]
            results.append(result)
        manifest = build_manifest(
            ctx=ctx,
            formats=[r.name for r in results],
            results=results,
            keras=keras_info,
            seconds=time.perf_counter() - started,
            kept=kept,
        )
        manifest.auto = decisions
        write_json(ctx.folder.model_card, build_model_card(ctx, manifest))
        write_json(ctx.folder.manifest, manifest.to_dict())  # last
        ctx.folder.drop_unclaimed(a.path for a in manifest.artifacts if a.path)
    finally:
        ctx.close()
    for line in stale_dependents(run):
        echo(f"stale: {line}")
    return manifest


def unavailable_for(fmt: FormatSpec, ctx: ExportContext, auto: bool) -> dict | None:
    """Why ``fmt`` cannot run for this run's model (a manifest decision, not a failure), or None when it can:
    a format that rebuilds the model from its architecture (QAT) for an imported model; a format that
    converts a Keras model for an imported ONNX model."""
    if fmt.needs_keras and not ctx.has_keras:
        reason = (
            f"{fmt.name} converts a Keras model and this model was imported from ONNX; ONNX -> TFLite is not "
            "offered (onnx2tf, tried: pins TensorFlow 2.19, downloads calibration data at run time, needs "
            "per-model flags for channels-last inputs): its ONNX formats are exported instead"
        )
    elif fmt.rebuilds_model and ctx.spec.imported:
        reason = (
            f"{fmt.name} rebuilds the model from an architecture edge-export knows (in tf_keras, for tfmot); "
            "an imported model is not one: its post-training int8 formats are exported instead"
        )
    else:
        return None
    return {"mode": "auto" if auto else "requested", "ran": False, "reason": reason}


def auto_qat_decision(config: ExportConfig, results: list[ArtifactRecord]) -> dict:
    """Whether ``tflite-qat-int8:auto`` runs: only when post-training ``tflite-int8`` (this export's, or the
    earlier export's of the same model.keras) loses more than ``export.qat.trigger_points`` of validation
    accuracy against the Keras model. Without a tflite-int8 result to judge by, it runs."""
    trigger = float(config.qat.trigger_points)
    decision: dict = {"mode": "auto", "trigger_points": trigger, "compared_with": "tflite-int8"}
    int8 = next((r for r in results if r.name == "tflite-int8"), None)
    parity = (int8.parity or {}) if int8 is not None else {}
    if "accuracy_drop" not in parity:
        why = "it was not exported" if int8 is None else f"it failed ({int8.error})"
        return {
            **decision,
            "ran": True,
            "reason": f"no validation result of post-training tflite-int8 to judge by: {why}",
        }
    drop = float(parity["accuracy_drop"])
    ran = drop > trigger
    reason = (
        f"post-training tflite-int8 loses {drop:+.2f} points of validation accuracy on {parity.get('images')} images "
        f"({'more than' if ran else 'within'} export.qat.trigger_points {trigger:g})"
    )
    return {
        **decision,
        "ran": ran,
        "reason": reason,
        "int8_accuracy_drop": round(drop, 4),
        "int8_top1_agreement": parity.get("top1_agreement"),
        "images": parity.get("images"),
    }


def _start(ctx: ExportContext, specs: list[FormatSpec]) -> list[ArtifactRecord]:
    """Make room for this export; return the earlier export's entries that stay (other formats, same model).

    The manifest changes first (rewritten to claim only what stays, or removed), then files go.
    """
    folder = ctx.folder
    kept = _earlier_entries(ctx, {f.name for f in specs})
    if kept:
        ctx.echo(f"export/: keeping {', '.join(a.name for a in kept)} (exported earlier from this same model.keras)")
        interim = build_manifest(ctx=ctx, formats=[], results=[], keras={}, seconds=0.0, kept=kept)
        write_json(folder.model_card, build_model_card(ctx, interim))
        write_json(folder.manifest, interim.to_dict())
    else:
        folder.manifest.unlink(missing_ok=True)
    stays = [folder.root / a.path for a in kept if a.path]
    replaced = [folder.artifact(f) for f in specs]  # stay until this export's file replaces each (export_one)
    folder.clear(keep=[*stays, *replaced, *([folder.labels, folder.model_card] if kept else [])])
    return kept


def _earlier_entries(ctx: ExportContext, requested: set[str]) -> list[ArtifactRecord]:
    """The earlier manifest's entries of formats not requested now, when it was made from this model.keras
    and their files are still the ones it lists. Says what goes, and why."""
    folder, echo = ctx.folder, ctx.echo
    if not folder.manifest.is_file():
        return []
    try:
        earlier = read_manifest(ctx.run)
    except EdgeExportError as exc:
        echo(f"export/: the earlier manifest is unusable ({exc.message}); its artifacts are removed")
        return []
    others = [a for a in earlier.artifacts if a.name not in requested]
    if earlier.model.sha256 != ctx.record.model_sha256:
        if earlier.artifacts:
            echo(
                f"export/: removing the earlier export ({', '.join(a.name for a in earlier.artifacts)}): "
                "it was made from an older model.keras"
            )
        return []
    kept = []
    for entry in others:
        fmt = FORMATS.get(entry.name)
        if fmt is None or (entry.path is not None and entry.path != fmt.filename):
            echo(f"export/: removing {entry.name}: not an artifact this export makes")
            continue
        path = folder.artifact(fmt)
        if entry.path is not None and (not path.is_file() or sha256_file(path) != entry.sha256):
            echo(f"export/: removing {entry.name}: its file is missing or changed since it was exported")
        else:
            kept.append(entry)
    return kept


def export_one(
    ctx: ExportContext, fmt: FormatSpec, images, reference, step: str, debug: bool = False
) -> ArtifactRecord:
    """Convert one format to its file, then check it with the runtime. Exceptions become a failed result;
    KeyboardInterrupt and other BaseExceptions propagate (after the temporary file is removed)."""
    echo = ctx.echo
    result = ArtifactRecord(fmt.name, fmt.family, fmt.precision)
    echo(f"{step} {fmt.name}: converting ...")
    started = time.perf_counter()
    path = ctx.folder.artifact(fmt)
    try:
        # converted and checked under a temporary name beside it: an earlier export's file of this format stays
        # in place (and usable) until the new one is complete and checked, then is replaced by one rename;
        # Ctrl-C or a crash leaves the old file, never none
        with atomic_path(path) as tmp:
            try:
                with native_stderr_captured():  # converter/delegate chatter; replayed on failure
                    result.details = load_converter(fmt)(ctx, fmt, tmp) or {}
            finally:
                # converters leave their work in reference cycles that only the cycle collector frees, and it
                # may not run for a long while (tf2onnx: 0.9 GB at 288 px, to the end)
                gc.collect()
            result.size_bytes = tmp.stat().st_size
            result.sha256 = sha256_file(tmp)
            _check(ctx, result, tmp, images, reference, debug)
        result.path = ctx.folder.relative(path)
    except Exception as exc:
        result.fail(f"conversion failed: {_message(exc)}")
        result.size_bytes = result.sha256 = None
        path.unlink(missing_ok=True)  # an earlier export's file of this format: not this export's result
        if debug:
            echo(traceback.format_exc())
    result.seconds = round(time.perf_counter() - started, 2)
    echo(f"{step} {fmt.name}: {_summary(result)} in {result.seconds:.1f}s")
    pause_point(f"export.artifact.{fmt.name}")  # tests: kill or resume after an artifact, before the manifest
    return result


def _check(ctx: ExportContext, result: ArtifactRecord, path: Path, images, reference, debug: bool) -> None:
    try:
        with native_stderr_captured():
            probs, classifier = artifact_probabilities(path, images.pixels)
        parity = compare(probs, reference, images.labels)
    except Exception as exc:
        result.fail(f"the exported file does not run in the runtime: {_message(exc)}")
        if debug:
            ctx.echo(traceback.format_exc())
        return
    spec = classifier.backend.input_spec
    result.input = {"dtype": spec.dtype.name, "scale": spec.scale, "zero_point": spec.zero_point}
    result.parity = parity.to_dict()
    over = check_budget(parity, ctx.config.accuracy_budget)
    if over:
        result.fail(over)


def _summary(result: ArtifactRecord) -> str:
    if result.status != "ok" and result.parity is None:
        return f"FAILED: {result.error}"
    p = result.parity or {}
    size = f"{result.size_bytes / 1e6:.2f} MB" if result.size_bytes else "-"
    text = (
        f"{size}, accuracy {p['accuracy']:.2%} (drop {p['accuracy_drop']:+.2f} points), "
        f"agreement {p['top1_agreement']:.2%}"
    )
    return text if result.status == "ok" else f"FAILED: {result.error} [{text}]"


def _message(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc).strip() or type(exc).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    short = " | ".join(lines[:3])
    if len(short) > 600:
        short = short[:600] + " ..."
    if not isinstance(getattr(exc, "message", None), str):
        short = f"{type(exc).__name__}: {short}"
    return short


def print_table(manifest: Manifest, echo: Echo = print) -> None:
    echo(render_table(manifest))
