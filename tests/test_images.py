"""The one image decoder: every supported kind comes out as upright 8-bit RGB; bad files fail clearly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge_export.core.errors import EdgeExportError
from edge_export.runtime.images import ImageDecodeError, load_image, open_rgb


def _base() -> Image.Image:
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:10] = (200, 30, 30)  # top half red
    pixels[10:] = (30, 30, 200)  # bottom half blue
    return Image.fromarray(pixels)


@pytest.mark.parametrize(
    "name, make",
    [
        ("rgb.jpg", lambda im: im),
        ("rgb.png", lambda im: im),
        ("rgb.bmp", lambda im: im),
        ("rgb.webp", lambda im: im),
        ("gray.png", lambda im: im.convert("L")),
        ("palette.png", lambda im: im.convert("P")),
        ("rgba.png", lambda im: im.convert("RGBA")),
        ("cmyk.jpg", lambda im: im.convert("CMYK")),
        ("frame.gif", lambda im: im.convert("P")),
    ],
)
def test_every_kind_decodes_to_rgb(tmp_path, name, make):
    path = tmp_path / name
    make(_base()).save(path, quality=95) if name.endswith((".jpg", ".webp")) else make(_base()).save(path)
    out = open_rgb(path)
    assert out.mode == "RGB" and out.size == (30, 20)
    pixels = np.asarray(out).astype(int)
    if not name.startswith("gray"):
        assert pixels[2, 2, 0] > pixels[2, 2, 2] + 60  # red on top survives the mode change
        assert pixels[-2, 2, 2] > pixels[-2, 2, 0] + 60


def test_exif_rotation_is_applied(tmp_path):
    image = _base()  # 30 wide, 20 high, red on top
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    out = np.asarray(open_rgb(path)).astype(int)
    assert out.shape == (30, 20, 3)  # upright: now tall
    assert out[15, -2, 0] > out[15, -2, 2] + 60  # red (was top) is now on the right
    assert out[15, 1, 2] > out[15, 1, 0] + 60


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    out = np.asarray(open_rgb(path))
    assert out[4, 4, 0] > 200 and out[4, 4, 2] < 50


def test_rgba_transparency_flattens_on_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(path)
    assert np.asarray(open_rgb(path))[0, 0].tolist() == [255, 255, 255]


def test_sixteen_bit_grayscale(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(path)
    assert np.asarray(open_rgb(path))[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    "name, content",
    [
        ("empty.jpg", b""),
        ("text.jpg", b"this is not an image"),
        ("truncated.jpg", "truncate"),
    ],
)
def test_bad_files_raise_naming_the_file(tmp_path, name, content):
    path = tmp_path / name
    if content == "truncate":
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buffer, "JPEG")
        content = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError) as info:
        open_rgb(path)
    assert name in str(info.value)


def test_load_image_inputs_agree(tmp_path):
    path = tmp_path / "a.png"
    _base().save(path)
    from_path = load_image(path, (10, 12))
    assert from_path.shape == (10, 12, 3) and from_path.dtype == np.uint8
    np.testing.assert_array_equal(from_path, load_image(_base(), (10, 12)))
    np.testing.assert_array_equal(from_path, load_image(np.asarray(_base()), (10, 12)))
    with pytest.raises(EdgeExportError, match="dtype"):
        load_image(np.zeros((4, 4, 3), np.float32), (4, 4))
