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


# ------------------------------------------------------------------------- decoding sized for its use (JPEG draft mode)


def _photo(width: int, height: int) -> Image.Image:
    """A smooth, photo-like RGB image (gradients and waves) of any size."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [255 * x / width, 255 * y / height, 128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0)]
    return Image.fromarray(np.stack(channels, axis=-1).astype(np.uint8))


def test_a_large_jpeg_is_decoded_at_the_dct_scale_that_still_covers_the_target(tmp_path):
    path = tmp_path / "big.jpg"
    _photo(1200, 900).save(path, quality=92)
    assert open_rgb(path).size == (1200, 900)  # no target size: full decode
    assert open_rgb(path, size=(64, 64)).size == (150, 113)  # 1/8, still >= 64 x 64
    assert open_rgb(path, size=(288, 288)).size == (600, 450)  # 1/2: 1/4 would give 300 x 225, under 288
    full = np.asarray(open_rgb(path).resize((288, 288), Image.Resampling.BILINEAR), np.int16)
    fast = load_image(path, (288, 288))
    assert fast.shape == (288, 288, 3) and fast.dtype == np.uint8
    assert np.abs(full - fast).mean() < 1.5  # the same picture: DCT scaling, then bilinear, ~ bilinear alone
    mpo = tmp_path / "big.mpo"  # a phone's multi-picture JPEG: its first frame, drafted the same way
    _photo(1200, 900).save(mpo, save_all=True, append_images=[Image.new("RGB", (1200, 900))], quality=92)
    assert open_rgb(mpo, size=(64, 64)).size == (150, 113)
    np.testing.assert_array_equal(load_image(mpo, (288, 288)), load_image(path.with_name("big.jpg"), (288, 288)))


def test_a_jpeg_under_twice_the_target_and_other_formats_are_decoded_in_full(tmp_path):
    jpeg, png = tmp_path / "wide.jpg", tmp_path / "big.png"
    _photo(1000, 100).save(jpeg, quality=92)
    _photo(1200, 900).save(png)
    assert open_rgb(jpeg, size=(64, 64)).size == (1000, 100)  # 100 rows < 2 x 64: no scale keeps 64 rows
    assert open_rgb(png, size=(64, 64)).size == (1200, 900)
    for path in (jpeg, png):
        expected = np.asarray(open_rgb(path).resize((64, 64), Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(load_image(path, (64, 64)), expected)


def test_the_draft_size_follows_the_exif_rotation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: 1200 wide, 600 high; upright 600 wide, 1200 high
    path = tmp_path / "sideways.jpg"
    _photo(1200, 600).save(path, exif=exif.tobytes(), quality=92)
    out = open_rgb(path, size=(500, 250))  # upright (height, width): 2x fits the upright image, not the stored one
    assert out.size == (300, 600)  # decoded at 1/2, then turned upright; still covers 250 x 500
    assert load_image(path, (500, 250)).shape == (500, 250, 3)


def test_the_pixel_limit_applies_to_the_declared_size_not_the_drafted_one(tmp_path):
    path = tmp_path / "big.jpg"
    _photo(1200, 900).save(path)
    with pytest.raises(ImageDecodeError, match="over the limit"):
        load_image(path, (64, 64), max_pixels=100_000)  # 1.08 MP declared, 150 x 113 once drafted


def test_a_file_that_is_no_image_is_named_without_internals(tmp_path):
    from edge_export.runtime.images import ImageDecodeError, load_image

    path = tmp_path / "notes.jpg"
    path.write_bytes(b"shopping list: milk, eggs")
    with pytest.raises(ImageDecodeError) as error:
        load_image(path, (8, 8))
    message = str(error.value)
    assert str(path) in message and "not an image format Pillow reads" in message
    assert "Reader" not in message and "<" not in message  # not Pillow's name for our file object
