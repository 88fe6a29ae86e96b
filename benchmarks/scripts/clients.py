"""Clients this project did not write (MediaPipe Tasks, OpenCV DNN, plain ONNX Runtime), each in its own
virtual environment so their pins never touch ours (MediaPipe needs absl-py~=2.3, which clashes with our
tfmot pin; it pulls its own OpenCV, numpy, protobuf).

Two halves in one stdlib-only file:

* **our side** (``client_python``): makes the client environment once, with ``python -m venv`` and pip,
  from the pinned requirements of ``CLIENTS[name]``, cached under ``$EDGE_EXPORT_CLIENTS_DIR`` (default
  ``~/.cache/edge-export/clients/``) in a folder named after a hash of the pins and the Python version;
  returns its python, or ``None`` and the reason it could not be made (no network, pip failed). Every step
  has a time limit; ``EDGE_EXPORT_CLIENTS=off`` skips making one. ``run_client`` runs a command of the
  client half in it and returns its JSON answer.
* **the client half** (``python clients.py COMMAND ...``, run with the client environment's python; it
  imports nothing of edge-export): ``mediapipe-classify``, ``mediapipe-write``, ``opencv-dnn``,
  ``onnx-metadata``; each prints one JSON document.

    python benchmarks/scripts/clients.py make [--name mediapipe]    # make (or find) the environment, print its python
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

# Pinned client environments: name -> requirements. "mediapipe" is the current release line (its metadata
# writer is broken: it imports a native module, mediapipe.tasks.cc.metadata, that its wheels no longer ship);
# "mediapipe-0.10" is the 0.10 line most apps use, whose metadata writer works.
CLIENTS: dict[str, tuple[str, ...]] = {
    "mediapipe": ("mediapipe==1.2.3", "opencv-contrib-python==5.1.0.95", "onnxruntime==1.32.0", "numpy==2.4.6"),
    "mediapipe-0.10": (
        "mediapipe==0.10.21",
        "opencv-contrib-python==4.11.0.86",
        "onnxruntime==1.32.0",
        "numpy==1.26.4",
    ),
}
VENV_TIMEOUT_S = 180
PIP_TIMEOUT_S = 900  # the whole install; pip itself gives up on a silent connection after 30 s
CLIENT_TIMEOUT_S = 600
_made: dict[str, tuple[Path | None, str | None]] = {}  # per process: try each environment once


def clients_dir() -> Path:
    return Path(os.environ.get("EDGE_EXPORT_CLIENTS_DIR") or Path.home() / ".cache" / "edge-export" / "clients")


def environment_key(name: str) -> str:
    pins = "\n".join(sorted(CLIENTS[name]))
    text = f"{pins}\npython {sys.version_info.major}.{sys.version_info.minor}\n{sys.platform}"
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _python_in(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def client_python(name: str = "mediapipe", echo=None) -> tuple[Path | None, str | None]:
    """(python of the client environment ``name``, None), or (None, why it cannot be made). Made once."""
    if name not in CLIENTS:
        raise ValueError(f"unknown client environment {name!r}: use one of {sorted(CLIENTS)}")
    if os.environ.get("EDGE_EXPORT_CLIENTS", "").lower() in ("0", "off", "no", "false"):
        return None, "client environments are switched off (EDGE_EXPORT_CLIENTS=off)"
    if name not in _made:
        _made[name] = _make(name, echo or (lambda line: None))
    return _made[name]


def _make(name: str, echo) -> tuple[Path | None, str | None]:
    root = clients_dir()
    venv = root / environment_key(name)
    ready = venv / "ready.json"
    if ready.is_file() and _python_in(venv).is_file():
        return _python_in(venv), None
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return None, f"cannot create {root}: {exc}"
    with _Lock(root / f"{venv.name}.lock"):
        if ready.is_file() and _python_in(venv).is_file():  # made by another process meanwhile
            return _python_in(venv), None
        shutil.rmtree(venv, ignore_errors=True)  # a half-made one (no ready.json): start again
        echo(f"making the client environment {name} ({', '.join(CLIENTS[name])}) in {venv}")
        started = time.monotonic()
        steps = (
            ([sys.executable, "-m", "venv", str(venv)], VENV_TIMEOUT_S),
            (
                [
                    str(_python_in(venv)),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--timeout",
                    "30",
                    "--retries",
                    "2",
                    *CLIENTS[name],
                ],
                PIP_TIMEOUT_S,
            ),
        )
        for command, limit in steps:
            reason = _step(command, limit)
            if reason:
                shutil.rmtree(venv, ignore_errors=True)
                return None, f"cannot make the client environment {name}: {reason}"
        freeze = subprocess.run(
            [str(_python_in(venv)), "-m", "pip", "freeze"], capture_output=True, text=True, timeout=120
        )
        ready.write_text(
            json.dumps(
                {  # last: its presence says the environment is complete
                    "name": name,
                    "requirements": list(CLIENTS[name]),
                    "python": sys.version.split()[0],
                    "installed": freeze.stdout.split(),
                    "seconds": round(time.monotonic() - started, 1),
                },
                indent=1,
            )
        )
        return _python_in(venv), None


def _step(command: Sequence[str], limit: float) -> str | None:
    """None when ``command`` succeeds within ``limit`` seconds, else a one-line reason."""
    try:
        done = subprocess.run(
            list(command), capture_output=True, text=True, timeout=limit, env={**os.environ, "PIP_NO_INPUT": "1"}
        )
    except subprocess.TimeoutExpired:
        return f"`{' '.join(command[:4])} ...` ran past {limit:.0f} s"
    except OSError as exc:
        return f"`{command[0]}`: {exc}"
    if done.returncode:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()] or lines
        return f"`{' '.join(command[2:4])}` failed: {errors[-1][:300] if errors else done.returncode}"
    return None


class _Lock:
    """An exclusive lock file (fcntl where there is one), so two processes never make the same environment."""

    def __init__(self, path: Path):
        self.path = path
        self.file: IO[str] | None = None

    def __enter__(self):
        self.file = open(self.path, "a+")
        try:
            import fcntl

            fcntl.flock(self.file, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover (Windows)
            pass
        return self

    def __exit__(self, *exc):
        assert self.file is not None  # opened by __enter__
        self.file.close()


def installed_versions(python: Path) -> dict[str, str]:
    """Package -> version in the client environment (from its ready.json)."""
    ready = Path(python).parent.parent / "ready.json"
    try:
        lines = json.loads(ready.read_text())["installed"]
    except (OSError, ValueError, KeyError):
        return {}
    return dict(line.split("==", 1) for line in lines if "==" in line)


def run_client(python: Path, command: str, *args: str, timeout: float = CLIENT_TIMEOUT_S) -> dict[str, Any]:
    """Run ``clients.py COMMAND ARGS`` with the client environment's ``python``; its JSON answer.
    Raises RuntimeError with the client's stderr when it crashes or prints no JSON."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1")
    try:
        done = subprocess.run(
            [str(python), str(Path(__file__).resolve()), command, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"client {command} ran past {timeout:.0f} s") from None
    last = done.stdout.strip().splitlines()[-1:] if done.stdout.strip() else []
    try:
        answer = json.loads(last[0]) if last else None
    except ValueError:
        answer = None
    if done.returncode or not isinstance(answer, dict):
        raise RuntimeError(f"client {command} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return answer


# ---------------------------------------------------------------------------------------------- client half
# Everything below runs in the client environment: it imports mediapipe, cv2 and onnxruntime, never edge-export.


def mediapipe_classify(model: str, images: Sequence[str]) -> dict[str, Any]:
    """MediaPipe Tasks ImageClassifier on ``model``: does it load, and every category of every image."""
    import mediapipe as mp
    from mediapipe.tasks import python as mp_python
    from mediapipe.tasks.python import vision

    options = vision.ImageClassifierOptions(base_options=mp_python.BaseOptions(model_asset_path=model), max_results=-1)
    try:
        classifier = vision.ImageClassifier.create_from_options(options)
    except Exception as exc:  # what a user sees when MediaPipe refuses the model
        return {"loaded": False, "error": f"{type(exc).__name__}: {exc}", "mediapipe": mp.__version__}
    results: list[Any] = []
    with classifier:
        for path in images:
            try:
                categories = classifier.classify(mp.Image.create_from_file(path)).classifications[0].categories
            except Exception as exc:  # an image MediaPipe cannot decode: its error in its place
                results.append({"error": f"{type(exc).__name__}: {exc}"})
                continue
            results.append(
                [
                    {"index": c.index, "score": float(c.score), "name": c.category_name, "display_name": c.display_name}
                    for c in categories
                ]
            )
    return {"loaded": True, "error": None, "mediapipe": mp.__version__, "results": results}


def mediapipe_write(model: str, out: str, labels: Sequence[str], mean: float, std: float) -> dict[str, Any]:
    """MediaPipe's own metadata writer (``metadata_writers.image_classifier``) on a float TFLite model."""
    import mediapipe as mp
    from mediapipe.tasks.python.metadata.metadata_writers import image_classifier, metadata_writer

    writer = image_classifier.MetadataWriter.create(
        Path(model).read_bytes(),
        input_norm_mean=[mean],
        input_norm_std=[std],
        labels=metadata_writer.Labels().add(list(labels)),
    )
    data, metadata_json = writer.populate()
    Path(out).write_bytes(data)
    return {"written": out, "mediapipe": mp.__version__, "metadata": json.loads(metadata_json)}


def _read_rgb(path: str, size: tuple[int, int]):
    """The image as a client would feed our ONNX model: RGB, resized (bilinear) to ``size``, float32 0-255."""
    import cv2
    import numpy as np

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"OpenCV cannot read {path}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def onnx_metadata(model: str) -> dict[str, Any]:
    """The conventions keys as plain ONNX Runtime gives them, decoded as their readers do (``names`` and
    ``imgsz`` with ``ast.literal_eval``, as Ultralytics' AutoBackend; ``labels``, ``mean``, ``std`` JSON)."""
    import ast

    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    props = dict(session.get_modelmeta().custom_metadata_map)
    decoded: dict[str, Any] = {}
    for key in ("names", "imgsz"):
        if key in props:
            decoded[key] = ast.literal_eval(props[key])
    for key in ("labels", "mean", "std"):
        if key in props:
            decoded[key] = json.loads(props[key])
    for key in ("stride", "batch", "channels", "input_height", "input_width"):
        if key in props:
            decoded[key] = int(props[key])
    inp = session.get_inputs()[0]
    return {
        "onnxruntime": ort.__version__,
        "keys": sorted(props),
        "props": props,
        "decoded": decoded,
        "input": {"name": inp.name, "shape": [d if isinstance(d, int) else None for d in inp.shape], "type": inp.type},
    }


def opencv_dnn(model: str, images: Sequence[str]) -> dict[str, Any]:
    """OpenCV DNN (``cv2.dnn.readNetFromONNX``) and plain ONNX Runtime on the same pixels: one image at a
    time and all at once; the input size and layout come from the model's convention keys."""
    import cv2
    import numpy as np
    import onnxruntime as ort

    meta = onnx_metadata(model)
    props = meta["decoded"]
    size = tuple(props.get("imgsz") or (props["input_height"], props["input_width"]))
    batch = np.stack([_read_rgb(path, size) for path in images])
    if meta["props"].get("input_layout") == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    batch = np.ascontiguousarray(batch)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    ort_rows = session.run(None, {name: batch})[0]
    out: dict[str, Any] = {
        "opencv": cv2.__version__,
        "onnxruntime": ort.__version__,
        "size": list(size),
        "ort_top1": [int(i) for i in ort_rows.argmax(-1)],
        "ort_scores": ort_rows.tolist(),
    }
    try:
        net = cv2.dnn.readNetFromONNX(model)
    except cv2.error as exc:
        return {**out, "loaded": False, "error": str(exc).strip().splitlines()[-1]}
    shapes, top1, scores = [], [], []
    for one in batch:
        net.setInput(one[None])
        rows = np.asarray(net.forward())
        shapes.append(list(rows.shape))
        top1.append(int(rows.reshape(-1, rows.shape[-1])[0].argmax()))
        scores.append(rows.reshape(-1).tolist())
    net.setInput(batch)
    batch_rows = np.asarray(net.forward())
    return {
        **out,
        "loaded": True,
        "error": None,
        "shapes": shapes,
        "top1": top1,
        "scores": scores,
        "batch_shape": list(batch_rows.shape),
    }


def _main(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="make (or find) a client environment; print its python")
    make.add_argument("--name", default="mediapipe", choices=sorted(CLIENTS))
    classify = sub.add_parser("mediapipe-classify")
    classify.add_argument("model")
    classify.add_argument("images", nargs="*")
    write = sub.add_parser("mediapipe-write")
    write.add_argument("model")
    write.add_argument("out")
    write.add_argument("--labels", required=True, help="comma-separated")
    write.add_argument("--mean", type=float, required=True)
    write.add_argument("--std", type=float, required=True)
    dnn = sub.add_parser("opencv-dnn")
    dnn.add_argument("model")
    dnn.add_argument("images", nargs="+")
    meta = sub.add_parser("onnx-metadata")
    meta.add_argument("model")
    args = parser.parse_args(argv)
    if getattr(args, "images", None):  # "@FILE": the image paths, one a line (a whole test split)
        args.images = [
            line
            for item in args.images
            for line in (Path(item[1:]).read_text().splitlines() if item.startswith("@") else [item])
            if line
        ]
    if args.command == "make":
        python, reason = client_python(args.name, echo=lambda line: print(line, file=sys.stderr))
        if python is None:
            print(f"warning: {reason}; the tests that need it will skip", file=sys.stderr)
            return 1
        print(python)
        return 0
    if args.command == "mediapipe-classify":
        answer = mediapipe_classify(args.model, args.images)
    elif args.command == "mediapipe-write":
        answer = mediapipe_write(args.model, args.out, args.labels.split(","), args.mean, args.std)
    elif args.command == "opencv-dnn":
        answer = opencv_dnn(args.model, args.images)
    else:
        answer = onnx_metadata(args.model)
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
