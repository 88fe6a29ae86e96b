"""Our exports in clients we did not write, on a real build's test split (issue 11, "What it must show"):

    python benchmarks/scripts/clients_check.py RUN_DIR --data TEST_DIR [--env mediapipe --env mediapipe-0.10]
        [--opencv-images 100] [--no-same-pixels] [--json out.json]

For each client environment (benchmarks/scripts/clients.py; made once, cached) and each of the run's
tflite-fp32, -fp16, -int8 and -dynamic that exists: does MediaPipe Tasks' ``vision.ImageClassifier`` load it,
which category names it gives, and on how many test images its top-1 equals our runtime's (strictly, and
counting exact ties of a quantized output within one step as agreement), plus both pipelines' accuracy
against the folder names. MediaPipe decodes and resizes each file itself, as an app would; our runtime does
its own (PIL's bilinear, which filters when it shrinks; MediaPipe's does not), so the "same pixels" column
repeats the comparison on the images already resized by our runtime (PNG): what differs there is the model
run alone. For onnx-fp32 and onnx-int8: OpenCV DNN's output shape for one image and for all of them at once,
and its top-1 against plain ONNX Runtime on the same pixels (the first ``--opencv-images`` images).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

# the sibling scripts import from this folder at run time; mypy checks them as package modules, unresolved
sys.path.insert(0, str(Path(__file__).resolve().parent))
import clients  # type: ignore[import-not-found]  # noqa: E402 (the sibling script: client environments and the client half)
from script_cli import finish  # type: ignore[import-not-found]  # noqa: E402 (the scripts' shared command line)

from edge_export.benchmarks.testset import scan_test_folder  # noqa: E402
from edge_export.core.errors import EdgeExportError  # noqa: E402
from edge_export.core.run_folder import RunFolder  # noqa: E402
from edge_export.export.manifest import read_manifest  # noqa: E402

TFLITE = ("tflite-fp32", "tflite-fp16", "tflite-int8", "tflite-dynamic")
ONNX = ("onnx-fp32", "onnx-int8")
ENVS = ("mediapipe", "mediapipe-0.10")


def artifacts(run: RunFolder, names: tuple[str, ...]) -> dict[str, Path]:
    """The run's exported artifacts among ``names`` that exist (failed or missing ones are left out)."""
    manifest = read_manifest(run)
    found = {}
    for name in names:
        entry = manifest.artifact(name)
        if entry is not None and entry.ok and entry.path and (run.export_dir / entry.path).is_file():
            found[name] = run.export_dir / entry.path
    return found


def our_probabilities(model: Path, files: list[Path]) -> tuple[np.ndarray, list[str]]:
    from edge_export.runtime.classifier import Classifier

    classifier = Classifier.load(model)
    labels = classifier.labels
    assert labels is not None  # an exported artifact carries its labels
    rows = np.zeros((len(files), len(labels)), np.float32)
    for i, result in enumerate(classifier.predict_each([str(f) for f in files], top_k=len(labels))):
        if isinstance(result, EdgeExportError):
            rows[i] = np.nan
            continue
        for p in result:
            rows[i, p.index] = p.probability
    return rows, labels


def resized_copies(files: list[Path], model: Path, folder: Path) -> Path:
    """Each image resized by our runtime to the model's input size, as PNG (lossless) in ``folder``; the
    listing of them. MediaPipe then resizes nothing (same size), so both pipelines see the same pixels."""
    from PIL import Image

    from edge_export.runtime.classifier import Classifier
    from edge_export.runtime.images import load_image

    prep = Classifier.load(model).preprocessing
    height, width = prep.size
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, path in enumerate(files):
        out = folder / f"{i:06d}.png"
        try:
            Image.fromarray(load_image(path, (height, width), prep.pixel_method)).save(out)
        except EdgeExportError:  # unreadable: MediaPipe gets the original and reports its own error
            out = path
        paths.append(str(out))
    listing = folder / "images.txt"
    listing.write_text("\n".join(paths) + "\n")
    return listing


def _agreement(results: list[Any], ours: np.ndarray, step: float) -> tuple[float, float]:
    counted = [
        (r[0]["index"], row) for r, row in zip(results, ours) if not isinstance(r, dict) and not np.isnan(row).any()
    ]
    n = max(len(counted), 1)
    strict = sum(top == int(row.argmax()) for top, row in counted)
    tied = sum(top == int(row.argmax()) or row.max() - row[top] <= step for top, row in counted)
    return strict / n, tied / n


def check_mediapipe(
    python: Path,
    name: str,
    model: Path,
    files: list[Path],
    truth: np.ndarray,
    class_names: list[str],
    listing: Path,
    resized: Path | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    answer = clients.run_client(python, "mediapipe-classify", str(model), f"@{listing}", timeout=3600)
    out: dict[str, Any] = {
        "artifact": name,
        "loads": answer["loaded"],
        "error": answer["error"],
        "mediapipe": answer["mediapipe"],
    }
    if not answer["loaded"]:
        return out
    ours, labels = our_probabilities(model, files)
    step = 1 / 256 + 1e-6 if "int8" in name else 1e-6  # an int8 output's quantization step
    names: set[str] = set()
    strict, tied, mp_correct, our_correct, counted, failed = 0, 0, 0, 0, 0, 0
    to_class = {i: class_names.index(label) if label in class_names else -1 for i, label in enumerate(labels)}
    for result, row, true in zip(answer["results"], ours, truth):
        if isinstance(result, dict) or np.isnan(row).any():
            failed += 1
            continue
        counted += 1
        names.update(c["name"] or "" for c in result)
        top = result[0]["index"]
        strict += top == int(row.argmax())
        tied += top == int(row.argmax()) or row.max() - row[top] <= step
        mp_correct += to_class.get(top) == true
        our_correct += to_class.get(int(row.argmax())) == true
    n = max(counted, 1)
    out = {
        **out,
        "category_names": sorted(names),
        "names_match_labels": sorted(names) == sorted(labels),
        "images": counted,
        "failed_images": failed,
        "top1_agreement": strict / n,
        "top1_agreement_with_ties": tied / n,
        "mediapipe_accuracy": mp_correct / n,
        "our_accuracy": our_correct / n,
    }
    if resized is not None:  # the same pixels in: what is left is the model run itself
        same = clients.run_client(python, "mediapipe-classify", str(model), f"@{resized}", timeout=3600)
        out["same_pixels_top1_agreement"], out["same_pixels_top1_agreement_with_ties"] = _agreement(
            same["results"], ours, step
        )
    return {**out, "seconds": round(time.perf_counter() - started, 1)}


def check_opencv(python: Path, name: str, model: Path, files: list[Path], classes: int) -> dict[str, Any]:
    answer = clients.run_client(python, "opencv-dnn", str(model), *map(str, files), timeout=3600)
    out = {
        "artifact": name,
        "opencv": answer["opencv"],
        "loads": answer["loaded"],
        "error": answer["error"],
        "onnxruntime_shape": list(np.asarray(answer["ort_scores"]).shape),
    }
    if not answer["loaded"]:
        return out
    shapes = {tuple(s) for s in answer["shapes"]}
    agree = np.mean([a == b for a, b in zip(answer["top1"], answer["ort_top1"])])
    return {
        **out,
        "one_image_shapes": sorted(map(list, shapes)),
        "one_row_per_image": shapes == {(1, classes)},
        "batch_shape": answer["batch_shape"],
        "images": len(files),
        "top1_agreement_with_onnxruntime": float(agree),
    }


def clients_check(
    run_dir: Path,
    data: Path,
    envs: tuple[str, ...] = ENVS,
    opencv_images: int = 100,
    echo=print,
    same_pixels: bool = True,
) -> dict[str, Any]:
    run = RunFolder(run_dir)
    testset = scan_test_folder(data)
    files, truth = [Path(f).resolve() for f in testset.files], np.asarray(testset.labels)
    tflite, onnx = artifacts(run, TFLITE), artifacts(run, ONNX)
    if not tflite and not onnx:
        raise EdgeExportError("the run has no TFLite or ONNX artifact to check", path=run.export_manifest)
    result: dict[str, Any] = {
        "run": str(run.root),
        "data": str(testset.root),
        "images": len(files),
        "environments": {},
        "mediapipe": [],
        "opencv": [],
    }
    with tempfile.TemporaryDirectory(prefix="clients-check-") as tmp:
        listing = Path(tmp) / "images.txt"
        listing.write_text("\n".join(str(f) for f in files) + "\n")
        resized: dict[str, Path] = {}
        for env in envs:
            python, reason = clients.client_python(env, echo=echo)
            if python is None:
                echo(f"{env}: skipped ({reason})")
                result["environments"][env] = {"skipped": reason}
                continue
            versions = clients.installed_versions(python)
            result["environments"][env] = {
                k: versions.get(k) for k in ("mediapipe", "opencv-contrib-python", "onnxruntime", "numpy")
            }
            for name, model in tflite.items():
                echo(f"{env}: MediaPipe ImageClassifier on {name} ({len(files)} images) ...")
                if same_pixels and name not in resized:
                    resized[name] = resized_copies(files, model, Path(tmp) / f"resized-{name}")
                result["mediapipe"].append(
                    {
                        "env": env,
                        **check_mediapipe(
                            python, name, model, files, truth, testset.class_names, listing, resized.get(name)
                        ),
                    }
                )
            labels = run.read_labels()
            for name, model in onnx.items():
                echo(f"{env}: OpenCV DNN on {name} ({min(opencv_images, len(files))} images) ...")
                result["opencv"].append(
                    {"env": env, **check_opencv(python, name, model, files[:opencv_images], len(labels))}
                )
    return result


def render(result: dict[str, Any]) -> str:
    lines = [f"{result['images']} test images from {result['data']}"]
    for env, versions in result["environments"].items():
        lines.append(f"{env}: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines.append("")
    lines.append(
        "MediaPipe Tasks ImageClassifier   loads  category names        top-1 = ours  (ties)  MP acc  our acc"
        "  same pixels: top-1 = ours"
    )
    for r in result["mediapipe"]:
        head = f"{r['env']:<15} {r['artifact']:<17}"
        if not r["loads"]:
            lines.append(f"{head} no     {r['error']}")
            continue
        lines.append(
            f"{head} yes    {','.join(r['category_names']):<21} {r['top1_agreement']:>11.2%}  "
            f"{r['top1_agreement_with_ties']:>6.2%}  {r['mediapipe_accuracy']:>6.2%}  "
            f"{r['our_accuracy']:>6.2%}"
            + (
                f"  {r['same_pixels_top1_agreement']:>8.2%} ({r['same_pixels_top1_agreement_with_ties']:.2%})"
                if "same_pixels_top1_agreement" in r
                else ""
            )
            + (f"  ({r['failed_images']} images failed)" if r["failed_images"] else "")
        )
    lines.append("")
    lines.append("OpenCV DNN (readNetFromONNX)      loads  one image -> shape    batch shape  top-1 = ONNX Runtime")
    for r in result["opencv"]:
        head = f"{r['env']:<15} {r['artifact']:<17}"
        if not r["loads"]:
            lines.append(f"{head} no     OpenCV {r['opencv']}: {r['error']}")
            continue
        lines.append(
            f"{head} yes    {str(r['one_image_shapes']):<21} {str(r['batch_shape']):<12} "
            f"{r['top1_agreement_with_onnxruntime']:.2%} of {r['images']}"
        )
    return "\n".join(lines)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="The test split (<class>/ folders).")
@click.option(
    "--env",
    "envs",
    multiple=True,
    type=click.Choice(list(clients.CLIENTS)),
    help="Client environments [all: mediapipe (1.x, OpenCV 5), mediapipe-0.10 (OpenCV 4)].",
)
@click.option("--opencv-images", default=100, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--same-pixels/--no-same-pixels",
    default=True,
    show_default=True,
    help="Also compare on images resized by our runtime (MediaPipe runs twice).",
)
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Also write the results to this JSON file.")
def main(run_dir, data, envs, opencv_images, same_pixels, json_out) -> None:
    """MediaPipe Tasks and OpenCV DNN on RUN_DIR's exports, against our runtime, on a test split."""
    finish(
        lambda: clients_check(
            run_dir, data, tuple(envs) or ENVS, opencv_images, echo=click.echo, same_pixels=same_pixels
        ),
        render,
        json_out,
    )


if __name__ == "__main__":  # pragma: no cover
    main()
