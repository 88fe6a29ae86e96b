"""Image decoding and resizing: the one implementation shared by training, export checks and runtime.

Any file Pillow reads (JPEG, PNG, BMP, GIF's first frame, WebP, ...) in any mode (grayscale, palette,
RGBA, CMYK, 16-bit) and any EXIF orientation comes out as upright 8-bit RGB. Resizing squashes the
whole image to the target size (no crop), like ``image_dataset_from_directory``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edge_export.errors import EdgeExportError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

RESIZE_METHODS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "area": Image.Resampling.BOX,
}

ImageInput = Union[str, Path, Image.Image, np.ndarray]


class ImageDecodeError(EdgeExportError):
    """An image file that cannot be decoded (unreadable, truncated, not an image)."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright RGB: apply EXIF rotation, take the first frame, flatten alpha on white."""
    if getattr(image, "is_animated", False):
        image.seek(0)
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        return Image.fromarray((array * (255.0 / top)).round().astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def open_rgb(path: str | Path) -> Image.Image:
    """Decode a file fully into an upright RGB image, or raise ImageDecodeError naming the file."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()  # force a full decode: truncated files fail here, not later
            return to_rgb(image)
    except FileNotFoundError:
        raise ImageDecodeError("image file not found", path=path, hint="check the path") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(
            f"cannot decode image ({exc})", path=path, hint="re-save it as JPEG/PNG or remove it"
        ) from None


def resize(image: Image.Image, size: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """Resize a PIL RGB image to ``size`` = (height, width); return HxWx3 uint8."""
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), RESIZE_METHODS[method])
    return np.asarray(image, dtype=np.uint8)


def load_image(source: ImageInput, size: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """Any supported input (path, PIL image, uint8 HxWx3/HxW array) -> HxWx3 uint8 at ``size``."""
    if isinstance(source, (str, Path)):
        image = open_rgb(source)
    elif isinstance(source, Image.Image):
        image = to_rgb(source)
    elif isinstance(source, np.ndarray):
        image = _array_to_image(source)
    else:
        raise EdgeExportError(
            f"unsupported image input of type {type(source).__name__}",
            hint="pass a file path, a PIL.Image or a uint8 array of shape HxWx3",
        )
    return resize(image, size, method)


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise EdgeExportError(
            f"image array has dtype {array.dtype}, expected uint8 pixel values 0-255",
            hint="convert with array.astype('uint8') after scaling to 0-255",
        )
    if array.ndim == 2:
        return Image.fromarray(array).convert("RGB")
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        if array.shape[2] == 1:
            return Image.fromarray(array[:, :, 0]).convert("RGB")
        return to_rgb(Image.fromarray(array))
    raise EdgeExportError(
        f"image array has shape {array.shape}, expected HxW, HxWx1, HxWx3 or HxWx4",
        hint="pass one image at a time as HxWx3, or a batch as NxHxWx3",
    )
