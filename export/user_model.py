"""A model edge-export did not train: load it, say what it is, and wrap it in the contract of our own models.

The contract (trainer/model.py): one input ``image`` of RGB pixels 0-255, N x S x S x 3 float32, and softmax
probabilities N x C out. A user's model keeps its weights and layers untouched inside the wrapper:

    image (0-255) -> input_scale (what the model expects: 0-255, 0-1, -1-1 or ImageNet mean/std)
                  -> the user's model -> to_probabilities (softmax of logits; [1 - p, p] of one sigmoid unit)

Only standard Keras layers are added (Normalization, Softmax, Dense with fixed weights), so the wrapped
model saves as a plain .keras and converts like any other. Loading errors become one-line errors naming
the file and the fix, before any long work.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_export.core.errors import EdgeExportError
from edge_export.core.records.model_source import INPUT_SCALES, OUTPUT_KINDS
from edge_export.core.tf_env import import_keras
from edge_export.core.untrusted import printable
from edge_export.runtime.metadata import label_lines

IMPORTED_BACKBONE = "imported"  # model_spec.json's backbone for a model edge-export did not train
INPUT_NAME, SCALE_LAYER, PROBABILITIES_LAYER = "image", "input_scale", "to_probabilities"
KERAS_SUFFIXES = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}
MODEL_SUFFIXES = {**KERAS_SUFFIXES, ".onnx": "onnx"}
_OTHER_SUFFIXES = {
    ".tflite": "already a TFLite model: bench it with `edge-export bench FILE.tflite --data DIR`",
    ".pt": "a PyTorch file: export it to ONNX first (torch.onnx.export), then pass the .onnx",
    ".pth": "a PyTorch file: export it to ONNX first (torch.onnx.export), then pass the .onnx",
}
_FIX_SOURCE = "pass a Keras 3 .keras file, a legacy .h5 file, a TensorFlow SavedModel folder or an .onnx file"


@dataclass(frozen=True)
class ModelShape:
    """What the model's own signature says, before any photo is run through it."""

    image_size: int  # the square input side
    outputs: int  # units of the one output (1: a binary sigmoid/logit)
    activation: str | None  # the last layer's activation where the model says it (softmax, sigmoid, linear)


class OutputUnits(Protocol):
    """What ``check_output`` and ``classes_of`` read of a shape: a ``ModelShape`` or an ONNX graph's
    ``export.onnx_source.OnnxShape``."""

    @property
    def outputs(self) -> int: ...


def source_kind(path: Path) -> str:
    """keras, h5, savedmodel or onnx by what the path is; else a clear error naming it."""
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise EdgeExportError(
            "the model folder is not a TensorFlow SavedModel (no saved_model.pb)", path=path, hint=_FIX_SOURCE
        )
    if not path.exists():
        raise EdgeExportError("model file not found", path=path, hint=_FIX_SOURCE)
    suffix = path.suffix.lower()
    if suffix in _OTHER_SUFFIXES:
        raise EdgeExportError(f"this is {_OTHER_SUFFIXES[suffix]}", path=path, hint=_FIX_SOURCE)
    if suffix not in MODEL_SUFFIXES:
        raise EdgeExportError(
            f"unknown model file suffix {printable(repr(suffix or path.name), 40)}", path=path, hint=_FIX_SOURCE
        )
    return MODEL_SUFFIXES[suffix]


def source_sha256(path: Path) -> str:
    """sha256 of the model file; of a SavedModel folder: of its files' relative paths and bytes, sorted."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def check_memory(path: Path) -> None:
    """A model whose weights alone would take most of the memory left is refused before loading it."""
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    available = _available_memory()
    if available is not None and size * 3 > available:  # the file, the loaded weights and a converter's copy
        raise EdgeExportError(
            f"the model is too large for this machine's memory: {size / 1e9:.1f} GB of weights, "
            f"{available / 1e9:.1f} GB available (export needs about three copies)",
            path=path,
            hint="export on a machine with more memory, or a smaller model",
        )


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def import_custom_objects(modules: list[str]) -> None:
    """Import the modules that register the model's custom layers (a module name, or a .py file)."""
    for name in modules:
        try:
            if name.endswith(".py"):
                file = Path(name).expanduser()
                if not file.is_file():
                    raise EdgeExportError(
                        "custom objects file not found",
                        path=file,
                        hint="model.custom_objects names .py files or importable modules",
                    )
                spec = importlib.util.spec_from_file_location(f"edge_export_custom_{file.stem}", file)
                assert spec is not None and spec.loader is not None  # a .py file always has both
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(name)
        except EdgeExportError:
            raise
        except Exception as exc:
            raise EdgeExportError(
                f"cannot import custom objects module {printable(repr(name), 200)}: "
                f"{type(exc).__name__}: {printable(str(exc), 200)}",
                hint="fix the module, or the model.custom_objects entry",
            ) from None


def load_user_model(path: Path, custom_objects: list[str] | tuple[str, ...] = ()) -> tuple[Any, str]:
    """(the Keras model, its kind) from a .keras, .h5 or SavedModel folder; clear errors for everything else."""
    kind = source_kind(path)
    if kind not in ("keras", "h5", "savedmodel"):
        raise EdgeExportError(f"not a Keras model ({kind})", path=path, hint=_FIX_SOURCE)
    check_memory(path)
    import_custom_objects(list(custom_objects))

    keras = import_keras()
    if kind == "savedmodel":
        return _saved_model(keras, path), kind
    if kind == "h5":
        _check_h5(path)
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # zipfile.BadZipFile, ValueError, TypeError, OSError, h5py errors ...
        raise _load_error(path, kind, exc) from None
    if not hasattr(model, "inputs") or not hasattr(model, "outputs"):
        raise EdgeExportError(
            "the file holds weights or a layer, not a whole model",
            path=path,
            hint="save the whole model: model.save('model.keras')",
        )
    return model, kind


def _check_h5(path: Path) -> None:
    try:
        # lazy: h5py comes with Keras (the train extra), which the base install lacks
        import h5py  # type: ignore[import-untyped]  # h5py ships no type information

        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                raise EdgeExportError(
                    "the .h5 file holds weights only, not a model (no model_config)",
                    path=path,
                    hint="save the whole model (model.save('model.h5') or 'model.keras'), not save_weights",
                )
    except EdgeExportError:
        raise
    except Exception as exc:
        raise EdgeExportError(
            f"not a readable HDF5 model file ({type(exc).__name__})", path=path, hint=_FIX_SOURCE
        ) from None


_UNKNOWN_CLASS = re.compile(r"(?:Could not locate (?:class|function) |Unknown (?:layer|object|class)[^']*)'([^']+)'")


def _load_error(path: Path, kind: str, exc: Exception) -> EdgeExportError:
    text = str(exc)
    missing = _UNKNOWN_CLASS.search(text)
    if missing:
        return EdgeExportError(
            f"the model needs the custom object {printable(repr(missing.group(1)), 80)}, which is not registered",
            path=path,
            hint="put the class in a module decorated with @keras.saving.register_keras_serializable() and pass it: "
            "model.custom_objects=[my_layers] (a module name or a .py file)",
        )
    if "Lambda" in text and "safe_mode" in text:
        return EdgeExportError(
            "the model has a Lambda layer, which Keras loads only with unsafe deserialization",
            path=path,
            hint="replace the Lambda with a registered custom layer (model.custom_objects=[module]); "
            "edge-export never loads arbitrary code from a model file",
        )
    first = printable(text.strip().splitlines()[0][:200], 200) if text.strip() else type(exc).__name__
    what = "Keras model" if kind == "keras" else "Keras .h5 model"
    return EdgeExportError(
        f"cannot load the file as a {what} ({type(exc).__name__}: {first})",
        path=path,
        hint=f"{_FIX_SOURCE}; a truncated or corrupt file needs saving again",
    )


def _saved_model(keras: Any, path: Path) -> Any:
    """A SavedModel's serving_default signature as a Keras model (one image input, one output)."""
    import tensorflow as tf  # lazy: TensorFlow (seconds to import, the train extra); only a SavedModel needs it

    try:
        loaded = tf.saved_model.load(str(path))
        signature = loaded.signatures["serving_default"]
    except KeyError:
        raise EdgeExportError(
            "the SavedModel has no serving_default signature",
            path=path,
            hint="save it with model.export(path) or tf.saved_model.save(model, path)",
        ) from None
    except Exception as exc:
        raise EdgeExportError(
            f"cannot load the SavedModel ({type(exc).__name__}: {printable(str(exc).strip()[:200], 200)})",
            path=path,
            hint=_FIX_SOURCE,
        ) from None
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
        raise EdgeExportError(
            f"the SavedModel takes {len(inputs)} inputs ({', '.join(sorted(inputs))}); "
            "an image classifier takes one image",
            path=path,
            hint="export a model with a single image input",
        )
    (spec,) = inputs.values()
    outputs = signature.structured_outputs
    if len(outputs) != 1:
        raise EdgeExportError(
            f"the SavedModel has {len(outputs)} outputs ({', '.join(sorted(outputs))}); "
            "a classifier has one (class scores)",
            path=path,
            hint="export the classification head only (a detection model is not a classifier)",
        )
    layer = keras.layers.TFSMLayer(str(path.resolve()), call_endpoint="serving_default", name="saved_model")
    shape = tuple(spec.shape)
    x = keras.Input(shape[1:], name="saved_model_input")
    y = layer(x)
    y = next(iter(y.values())) if isinstance(y, dict) else y
    return keras.Model(x, y, name="saved_model")


def model_shape(model: Any, path: Path, image_size: int | None) -> ModelShape:
    """Input size and output units from the model's signature; a clear error for what is not an image classifier."""
    if len(model.inputs) != 1:
        raise EdgeExportError(
            f"the model has {len(model.inputs)} inputs; an image classifier has one",
            path=path,
            hint="export a model with a single image input",
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise EdgeExportError(
            f"the model's input {printable(shape, 80)} is not a batch of RGB images (N x H x W x 3, channels last)",
            path=path,
            hint="edge-export exports channels-last RGB image classifiers",
        )
    height = input_side(shape[1], shape[2], shape, image_size, path)
    if len(model.outputs) != 1:
        raise EdgeExportError(
            f"the model has {len(model.outputs)} outputs; a classifier has one (class scores)",
            path=path,
            hint="export the classification head only (a detection or multi-task model is not a classifier)",
        )
    out = tuple(model.outputs[0].shape)
    if len(out) != 2 or out[-1] is None:
        raise EdgeExportError(
            f"the model's output {printable(out, 80)} is not class scores (N x classes): a detection, segmentation "
            "or feature model?",
            path=path,
            hint="end the model in a Dense layer over the classes",
        )
    return ModelShape(image_size=height, outputs=int(out[-1]), activation=_last_activation(model))


def input_side(height: int | None, width: int | None, shape: Any, image_size: int | None, path: Path) -> int:
    """The square input side of a model whose input is ``height`` x ``width`` (None: free), given ``--image-size``;
    a clear error for a free size without the flag, a flag that contradicts the model, or a non-square input."""
    if height is None or width is None:
        if image_size is None:
            raise EdgeExportError(
                f"the model takes any image size {printable(shape, 80)}: name the one to export",
                path=path,
                hint="pass --image-size N (model.image_size=N), the size it was trained at",
            )
        height = width = image_size
    elif image_size is not None and (height, width) != (image_size, image_size):
        raise EdgeExportError(
            f"--image-size {image_size} differs from the model's input {height}x{width}",
            path=path,
            hint="leave --image-size out: the model's own size is used",
        )
    if height != width:
        raise EdgeExportError(
            f"the model's input is {height}x{width}; edge-export exports square inputs so far",
            path=path,
            hint="make the model's input square",
        )
    if not 8 <= int(height) <= 1024:
        raise EdgeExportError(f"the model's input size {height} is outside 8..1024", path=path)
    return int(height)


def _last_activation(model: Any) -> str | None:
    """softmax, sigmoid or linear when the layer that makes the output says so (a Softmax layer too)."""
    try:
        layer = model.outputs[0]._keras_history[0]
    except (AttributeError, IndexError, TypeError):
        layer = model.layers[-1] if getattr(model, "layers", None) else None
    if layer is None:
        return None
    if type(layer).__name__ == "Softmax":
        return "softmax"
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    return name if name in ("softmax", "sigmoid", "linear") else None


def output_from_activation(shape: ModelShape) -> str | None:
    """The output kind the model's last layer states, or None where only the values can tell."""
    if shape.outputs == 1:
        return {"sigmoid": "sigmoid", "linear": "sigmoid-logit"}.get(shape.activation or "")
    if shape.activation == "sigmoid":
        return "sigmoid"  # several sigmoid units: refused by check_output (multi-label)
    return {"softmax": "softmax", "linear": "logits"}.get(shape.activation or "")


def check_output(kind: str, shape: OutputUnits, path: Path) -> None:
    if kind not in OUTPUT_KINDS:
        raise EdgeExportError(f"unknown model output kind {kind!r}", hint=f"use one of {', '.join(OUTPUT_KINDS)}")
    if kind.startswith("sigmoid") and shape.outputs != 1:
        raise EdgeExportError(
            f"the model ends in {shape.outputs} sigmoid units: a multi-label model, not a single-label classifier",
            path=path,
            hint="edge-export exports classifiers with one class per image (softmax, logits or one sigmoid)",
        )
    if not kind.startswith("sigmoid") and shape.outputs == 1:
        raise EdgeExportError(
            "the model has one output unit, so it is binary: its output is sigmoid or sigmoid-logit",
            path=path,
            hint="pass --output sigmoid or --output sigmoid-logit",
        )


def classes_of(shape: OutputUnits) -> int:
    return 2 if shape.outputs == 1 else shape.outputs


def wrap_model(keras: Any, model: Any, image_size: int, input_scale: str, output: str) -> Any:
    """The user's model inside our contract: pixels 0-255 in, softmax probabilities out (module docstring)."""
    mean, std = INPUT_SCALES[input_scale]
    inputs = keras.Input((image_size, image_size, 3), name=INPUT_NAME)
    x = inputs
    if input_scale != "0-255":
        x = keras.layers.Normalization(mean=list(mean), variance=[s * s for s in std], name=SCALE_LAYER)(x)
    # training=False recorded in the graph: augmentation layers inside the model (RandomFlip, RandomRotation, as
    # in the Keras tutorial) are the identity, Dropout too and BatchNormalization uses its moving statistics; else
    # their random ops reach the converters (TFLite refuses StatelessRandomUniformV2, ImageProjectiveTransformV3)
    y = model(x, training=False)
    if output == "logits":
        y = keras.layers.Softmax(name=PROBABILITIES_LAYER, dtype="float32")(y)
    elif output in ("sigmoid", "sigmoid-logit"):
        # p -> [1 - p, p] (sigmoid); z -> softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)] (sigmoid-logit)
        dense = keras.layers.Dense(
            2, activation="linear" if output == "sigmoid" else "softmax", name=PROBABILITIES_LAYER, dtype="float32"
        )
        y = dense(y)
        kernel = np.array([[-1.0, 1.0]] if output == "sigmoid" else [[0.0, 1.0]], np.float32)
        bias = np.array([1.0, 0.0] if output == "sigmoid" else [0.0, 0.0], np.float32)
        dense.set_weights([kernel, bias])
    elif getattr(y, "dtype", "float32") != "float32":
        y = keras.layers.Activation("linear", name=PROBABILITIES_LAYER, dtype="float32")(y)
    return keras.Model(inputs, y, name="imported_classifier")


def read_labels_file(path: Path) -> list[str]:
    if not path.is_file():
        raise EdgeExportError("labels file not found", path=path, hint="one class name a line, in the model's order")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeExportError(
            f"cannot read the labels file ({type(exc).__name__})",
            path=path,
            hint="a UTF-8 text file, one class name a line",
        ) from None
    labels = label_lines(text)
    if len(set(labels)) != len(labels):
        raise EdgeExportError("the labels file names a class twice", path=path, hint="one distinct name a line")
    return labels
