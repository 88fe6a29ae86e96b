"""Bundle flavours (the kind of device a bundle is made for), and the pinned runtime requirements each installs.

A flavour only changes what the bundle tells the device (requirements notes, README); the model file is
the same. Requirements are pinned to the versions installed HERE, the ones the export was checked with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edge_export.core.errors import EdgeExportError
from edge_export.core.versions import installed_version

# What every device needs (the base install of edge-export, TensorFlow-free), then one runtime per family.
BASE_REQUIREMENTS = ("numpy", "Pillow", "click", "PyYAML")
FAMILY_REQUIREMENTS = {"tflite": "ai-edge-litert", "onnx": "onnxruntime"}
# the package a model's image decoder needs beyond the base (Preprocessing.decoder): the same pixels as in training
DECODER_REQUIREMENTS = {"pillow": None, "opencv": "opencv-python-headless"}


@dataclass(frozen=True)
class Flavour:
    name: str
    description: str
    notes: str  # markdown for the bundle's README


FLAVOURS: dict[str, Flavour] = {
    t.name: t
    for t in (
        Flavour(
            "cpu",
            "any Linux, macOS or Windows machine with Python 3.10+",
            "Runs on the CPU. `--threads` in `run.py bench` sets the thread counts measured (0 = all cores).",
        ),
        Flavour(
            "rpi",
            "Raspberry Pi 4/5 with 64-bit Raspberry Pi OS (aarch64), Python 3.10+",
            "- Use the 64-bit OS: LiteRT and ONNX Runtime publish aarch64 wheels only (no 32-bit armv7 wheels).\n"
            "- Install into a virtual environment (`python3 -m venv`; Debian needs `sudo apt install python3-venv`).\n"
            "- A pinned version without a wheel for your Python makes pip try to compile it: then install the\n"
            "  nearest version with a wheel (`pip install numpy Pillow ...` without the pins) and compare the\n"
            "  bench accuracy with the one in `model_card.json`.\n"
            "- Int8 TFLite models are usually fastest on the Pi's Cortex-A CPU; measure with `run.py bench`.",
        ),
        Flavour(
            "jetson",
            "NVIDIA Jetson (Orin / Xavier, JetPack, aarch64), Python 3.10+",
            "- `requirements.txt` pins the CPU builds (PyPI's `onnxruntime`, `ai-edge-litert`): they run on the\n"
            "  Jetson's ARM cores as they are.\n"
            "- GPU for ONNX models: PyPI's `onnxruntime-gpu` is built for x86_64 only. Install the aarch64\n"
            "  `onnxruntime-gpu` wheel NVIDIA builds for your JetPack version (Jetson Zoo / the Jetson AI Lab pip\n"
            "  index) INSTEAD of the `onnxruntime` line, then choose the execution providers at prediction time:\n"
            "  `edge-export predict MODEL IMAGE --provider tensorrt --provider cuda` (TensorRT first, CUDA next,\n"
            "  CPU is always the fallback). Check what the wheel offers with\n"
            '  `python -c "import onnxruntime as o; print(o.get_available_providers())"`.\n'
            "- The TensorRT execution provider builds an engine on the first run (seconds to minutes); set\n"
            "  `ORT_TENSORRT_ENGINE_CACHE_ENABLE=1` and `ORT_TENSORRT_CACHE_PATH` to keep it between runs.\n"
            "  Int8 QDQ models need TensorRT's int8 support; fp32 ONNX is the safe start (fp16 is TensorRT's choice).\n"
            "- `run.py bench` measures the CPU execution provider (the same numbers on every device).\n"
            "- TFLite models run on the CPU (LiteRT has no Jetson GPU delegate in its wheels).",
        ),
    )
}


def get_flavour(name: str) -> Flavour:
    try:
        return FLAVOURS[name]
    except KeyError:
        raise EdgeExportError(f"unknown bundle flavour {name!r}", hint=f"use one of: {', '.join(FLAVOURS)}") from None


def pinned_requirements(families: Iterable[str], decoders: Iterable[str] = ()) -> list[str]:
    """``name==version`` for the base packages, the runtime of each model family and the package of each image
    decoder the models name (OpenCV for ``opencv``: about 80 MB installed), as installed here."""
    names = list(BASE_REQUIREMENTS)
    for family in dict.fromkeys(families):
        if family not in FAMILY_REQUIREMENTS:
            raise EdgeExportError(
                f"no runtime known for model family {family!r}", hint=f"one of {', '.join(FAMILY_REQUIREMENTS)}"
            )
        names.append(FAMILY_REQUIREMENTS[family])
    names += [package for d in dict.fromkeys(decoders) if (package := DECODER_REQUIREMENTS.get(d))]
    pins = []
    for name in names:
        version = installed_version(name)
        if version is None:
            raise EdgeExportError(
                f"cannot pin {name}: it is not installed here",
                hint=f"pip install {name} (the bundle pins the versions the model was checked with)",
            )
        pins.append(f"{name}=={version}")
    return pins
