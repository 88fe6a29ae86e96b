"""The two image decoders (runtime/images.py), named in the preprocessing record: ``pillow`` (every artifact made
before the field) and ``opencv`` (the default for new models). Same checks on hostile files, nearly the same
pixels, and what a model records is what the runtime uses."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_export.core.errors import EdgeExportError
from edge_export.core.records.preprocessing import Preprocessing, parse_pixel_method, pixel_method
from edge_export.runtime import images
from edge_export.runtime.images import ImageDecodeError, load_image

cv2 = pytest.importorskip("cv2", reason="OpenCV (pip install 'edge-export[video]') is not installed")
OPENCV = "opencv:bilinear"


def _photo(path: Path, size=(300, 220), seed=0, detail=10, **save) -> Path:
    """A photo-like JPEG: smooth random colours with features ``detail`` pixels across."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size[1] // detail + 1, size[0] // detail + 1, 3), dtype=np.uint8)
    Image.fromarray(base).resize(size, Image.BICUBIC).save(path, **{"quality": 92, **save})
    return path


def test_pixel_methods_name_the_decoder_and_old_names_mean_pillow():
    assert pixel_method("bilinear") == "bilinear" and pixel_method("area", "opencv") == "opencv:area"
    assert parse_pixel_method("bilinear") == ("pillow", "bilinear") and parse_pixel_method(OPENCV) == (
        "opencv",
        "bilinear",
    )
    for bad in ("opencv:zoom", "magick:bilinear", "", None):
        with pytest.raises(EdgeExportError, match="unknown pixel method"):
            parse_pixel_method(bad)
    record = Preprocessing(size=(32, 32), decoder="opencv")
    assert record.to_dict()["decoder"] == "opencv" and Preprocessing.from_dict(record.to_dict()) == record
    assert "decoder" not in Preprocessing(size=(32, 32)).to_dict()  # what older readers wrote and read
    assert Preprocessing.from_dict({"size": [32, 32]}).decoder == "pillow"  # an artifact from before the field
    with pytest.raises(EdgeExportError, match="unknown image decoder 'magick'"):
        Preprocessing.from_dict({"size": [32, 32], "decoder": "magick"})


def test_opencv_pixels_are_a_jpeg_decoded_by_opencv_and_close_to_pillows(tmp_path):
    photo = _photo(tmp_path / "a.jpg")  # under twice the input: decoded in full
    got = load_image(photo, (160, 128), OPENCV)
    expected = cv2.resize(
        cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB), (128, 160), interpolation=cv2.INTER_LINEAR
    )
    assert got.shape == (160, 128, 3) and got.dtype == np.uint8 and np.array_equal(got, expected)
    pillow = load_image(photo, (160, 128))
    assert np.abs(got.astype(int) - pillow).mean() < 3  # another library's rounding and filter, the same picture


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_like_pillows_draft(tmp_path, monkeypatch):
    photo = _photo(tmp_path / "big.jpg", size=(1200, 1000), detail=60)
    seen = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda data, flags: seen.append(flags) or real(data, flags))
    got = load_image(photo, (120, 100), OPENCV)
    monkeypatch.undo()
    assert seen == [cv2.IMREAD_COLOR_RGB | cv2.IMREAD_REDUCED_GRAYSCALE_8]  # 1200/8 = 150 >= 100, 1000/8 = 125 >= 120
    assert np.abs(got.astype(int) - load_image(photo, (120, 100))).mean() < 4


def test_exif_orientation_is_applied_like_pillows(tmp_path):
    pixels = np.zeros((120, 200, 3), np.uint8)
    pixels[:60] = (250, 10, 10)  # top half red, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    path = tmp_path / "turned.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    got, pillow = load_image(path, (100, 60), OPENCV), load_image(path, (100, 60))
    assert got.shape == pillow.shape == (100, 60, 3)
    assert got[:, -10:, 0].mean() > 200 and got[:, :10, 0].mean() < 50  # red on the right, as Pillow shows it
    assert np.abs(got.astype(int) - pillow).mean() < 6


def test_hostile_files_get_the_same_errors_through_opencv(tmp_path):
    photo = _photo(tmp_path / "a.jpg")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])
    for path in (cut, tmp_path / "missing.jpg"):
        with pytest.raises(ImageDecodeError) as opencv_error:
            load_image(path, (64, 64), OPENCV)
        with pytest.raises(ImageDecodeError) as pillow_error:
            load_image(path, (64, 64))
        assert opencv_error.value.message == pillow_error.value.message and str(path) in str(opencv_error.value)
    with pytest.raises(ImageDecodeError, match="over the limit"):  # from the header, before any decode
        load_image(_photo(tmp_path / "b.jpg"), (64, 64), OPENCV, max_pixels=1000)
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageDecodeError, match="not a regular file"):  # never waited on
        load_image(fifo, (64, 64), OPENCV)


def test_other_formats_are_decoded_by_pillow_and_resized_by_opencv(tmp_path):
    rgba = np.zeros((50, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :20, 3] = 255  # left half opaque red, right half transparent: white once flattened
    Image.fromarray(rgba).save(tmp_path / "a.png")
    got = load_image(tmp_path / "a.png", (50, 40), OPENCV)
    assert np.array_equal(got, load_image(tmp_path / "a.png", (50, 40)))  # same size: no resize, Pillow's flattening
    assert tuple(got[5, 35]) == (255, 255, 255) and tuple(got[5, 5]) == (200, 0, 0)
    frame = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    assert np.array_equal(
        load_image(frame, (45, 60), OPENCV), cv2.resize(frame, (60, 45), interpolation=cv2.INTER_LINEAR)
    )


def test_a_model_recording_opencv_runs_through_pillow_with_a_warning_where_opencv_is_missing(tmp_path, monkeypatch):
    photo = _photo(tmp_path / "a.jpg")
    monkeypatch.setattr(images, "_OPENCV", [])
    from conftest import without_module

    without_module(monkeypatch, "cv2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = load_image(photo, (64, 64), OPENCV)
    assert np.array_equal(got, load_image(photo, (64, 64)))
    assert any("runs through Pillow here: OpenCV is not installed" in str(w.message) for w in caught)


def test_the_pixel_cache_keeps_the_decoders_apart(tmp_path, monkeypatch):
    from edge_export.runtime.pixel_cache import cache_key, decoded_pixels

    monkeypatch.setenv("EDGE_EXPORT_PIXEL_CACHE", str(tmp_path / "pixels"))
    files = [_photo(tmp_path / f"{i}.jpg", seed=i) for i in range(3)]
    assert cache_key(files, (64, 64), "bilinear", None) != cache_key(files, (64, 64), OPENCV, None)
    opencv_pixels = decoded_pixels(files, (64, 64), OPENCV)
    assert np.array_equal(np.asarray(opencv_pixels), np.stack([load_image(f, (64, 64), OPENCV) for f in files]))
    assert not decoded_pixels(files, (64, 64), "bilinear").reused


def test_a_trained_model_records_its_decoder_and_the_runtime_uses_it(tmp_path):
    """A model trained with model.decoder=opencv says so in its artifact's metadata; Classifier.predict(path) gives
    exactly the scores of its predict_proba on OpenCV's pixels (and not on Pillow's)."""
    from edge_export.core.config import load_config
    from edge_export.core.run_folder import RunFolder
    from edge_export.export.exporter import export_run
    from edge_export.runtime.classifier import Classifier
    from edge_export.trainer.run import train_run

    from conftest import TINY_TRAIN, write_image_folder

    data = write_image_folder(tmp_path / "data", {"train": 8, "validation": 4, "test": 4}, size=(90, 70))
    run = RunFolder(tmp_path / "run")
    config = load_config(None, [f"data.path={data}", *TINY_TRAIN, "model.decoder=opencv"])
    train_run(config, run)
    manifest = export_run(run, config.export, run_config=config, formats="onnx-fp32", echo=None)
    assert manifest.ok
    classifier = Classifier.load(run.root / "export" / "onnx-fp32.onnx")
    assert classifier.preprocessing.decoder == "opencv" and classifier.preprocessing.pixel_method == OPENCV
    photo = _photo(tmp_path / "p.jpg", size=(90, 70))
    scores = classifier.predict(photo, top_k=2)[0]
    size = classifier.input_size
    direct = classifier.predict_proba(load_image(photo, size, classifier.preprocessing.pixel_method))[0]
    assert [p.probability for p in scores] == pytest.approx(sorted(direct, reverse=True)[:2], abs=1e-7)


def test_decoder_agreement_script_compares_decoders_and_runs(tiny_export):
    """benchmarks/scripts/decoder_agreement.py (the README's agreement figure), with one run as both new and old:
    the model on its own decoder agrees with itself; Pillow's pixels are the only other answer."""
    from conftest import load_script

    script = load_script("decoder_agreement")
    result = script.measure(tiny_export["run"], tiny_export["run"], tiny_export["data"] / "test", "tflite-int8")
    assert result["photos"] == 12 and set(result["accuracy"]) == {"new (opencv)", "new (pillow)", "old (opencv)"}
    assert result["agreement_with_new"]["old (opencv)"] == 1.0  # the same model and decoder
    assert 0 <= result["agreement_with_new"]["new (pillow)"] <= 1
    assert "agrees with" in script.render(result)
