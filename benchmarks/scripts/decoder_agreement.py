"""Two decoders, one question: does a model trained on OpenCV's pixels answer as one trained on Pillow's did?

    python benchmarks/scripts/decoder_agreement.py --new RUN_NEW --old RUN_OLD --data TEST_DIR
        [--artifact NAME] [--json OUT]

On every photo of ``--data`` (e.g. the 1,000 shared cats-vs-dogs test photos), with each run's ``--artifact``
(default: its recommended one):

    new (its decoder)        the new run's model on the pixels its record names (opencv)
    new (other decoder)      the same model fed Pillow's pixels: what the decoder alone changes
    old (its decoder)        the old run's model on Pillow's pixels (what users had)

Reports each one's accuracy and the top-1 agreement of new (its decoder) with the two others.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

from edge_export.benchmarks.machine import describe, machine_info
from edge_export.benchmarks.testset import scan_test_folder
from edge_export.core.records.preprocessing import pixel_method
from edge_export.core.run_folder import RunFolder
from edge_export.runtime.classifier import Classifier
from edge_export.runtime.images import decode_many

# the sibling scripts import from this folder at run time; mypy checks them as package modules, unresolved
sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_reference import artifact_path, recommended_artifact  # type: ignore[import-not-found]  # noqa: E402
from script_cli import finish, json_option  # type: ignore[import-not-found]  # noqa: E402


def _top1(classifier: Classifier, files: list[Path], method: str) -> np.ndarray:
    height, width = classifier.preprocessing.size
    decoded = decode_many(files, (height, width), method)
    if decoded.errors:
        raise RuntimeError(f"unreadable test photos: {decoded.errors}")
    scores = np.concatenate([classifier.predict_proba(decoded.pixels[i : i + 64]) for i in range(0, len(files), 64)])
    return scores.argmax(axis=1)


def measure(new: Path, old: Path, data: Path, artifact: str | None) -> dict:
    testset = scan_test_folder(data)
    files, truth = list(testset.files), np.asarray(testset.labels)
    out: dict = {"photos": len(files), "data": str(data), "machine": machine_info()}
    runs = {}
    for name, run_dir in (("new", new), ("old", old)):
        run = RunFolder(run_dir)
        chosen = artifact or recommended_artifact(run)
        runs[name] = (Classifier.load(artifact_path(run, chosen)), chosen)
        out[f"{name}_artifact"] = f"{run_dir}/{chosen}"
    new_clf, old_clf = runs["new"][0], runs["old"][0]
    prep = new_clf.preprocessing
    other = "pillow" if prep.decoder != "pillow" else "opencv"
    answers = {
        f"new ({prep.decoder})": _top1(new_clf, files, prep.pixel_method),
        f"new ({other})": _top1(new_clf, files, pixel_method(prep.resize, other)),
        f"old ({old_clf.preprocessing.decoder})": _top1(old_clf, files, old_clf.preprocessing.pixel_method),
    }
    labels = {name: list(clf.labels or []) for name, (clf, _) in runs.items()}  # no labels: differ below
    assert labels["new"] == labels["old"] == list(testset.class_names), "class orders differ"
    first = next(iter(answers.values()))
    out["accuracy"] = {k: float((v == truth).mean()) for k, v in answers.items()}
    out["agreement_with_new"] = {k: float((v == first).mean()) for k, v in list(answers.items())[1:]}
    return out


def render(r: dict) -> str:
    lines = [f"{r['photos']} photos of {r['data']}; new = {r['new_artifact']}, old = {r['old_artifact']}"]
    lines += [f"  {k:<20} accuracy {v:.2%}" for k, v in r["accuracy"].items()]
    first = next(iter(r["accuracy"]))
    lines += [f"  {first} agrees with {k} on {v:.2%}" for k, v in r["agreement_with_new"].items()]
    lines.append(f"machine: {describe(r['machine'])}")
    return "\n".join(lines)


@click.command()
@click.option("--new", "new", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--old", "old", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--artifact", help="artifact name in both runs [each run's recommended one]")
@json_option
def main(new: Path, old: Path, data: Path, artifact: str | None, json_out: Path | None) -> None:
    finish(lambda: measure(new, old, data, artifact), render, json_out)


if __name__ == "__main__":
    main()
