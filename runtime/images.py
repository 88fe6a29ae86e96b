"""Image decoding and resizing: the one implementation shared by training, export checks and runtime.

Any file Pillow reads (JPEG, PNG, BMP, GIF's first frame, WebP, ...) in any mode (grayscale, palette,
RGBA, CMYK, 16-bit) and any EXIF orientation comes out as upright 8-bit RGB. Resizing squashes the
whole image to the target size (no crop), like ``image_dataset_from_directory``.

Decoding is sized for its use: a JPEG at least twice the target size in both directions is decoded at
the largest DCT scale (1/2, 1/4, 1/8) that still gives at least the target size (Pillow's draft mode,
libjpeg's scaled IDCT), then resized as usual; smaller files are decoded in full. Training, export checks,
bench and the runtime all go through ``load_image``, so they see the same pixels.

Two decoders, named in every model's preprocessing record (``Preprocessing.decoder``; the pipeline's ``method``
key is ``pixel_method(resize, decoder)``): ``pillow`` (Pillow decodes and resizes; every artifact made before
the field) and ``opencv`` (a JPEG, once its header (walked by ``jpeg_header``) has passed the same checks, is decoded by
OpenCV's libjpeg-turbo straight to RGB at the same reduced DCT scale, EXIF orientation applied; every other
format, and any JPEG OpenCV declines (truncated, odd), by Pillow; then ``cv2.resize``). ``opencv`` is about 3x
faster per photo and needs ``opencv-python-headless`` (the train and video extras); where it is not installed a
model that asks for it runs through Pillow, with one warning (its pixels differ by a rounding here and there).

Files are untrusted: only regular files are opened (a FIFO or a device is refused, never waited on), and
an image whose header declares more than ``max_pixels`` (width x height; default ``DEFAULT_MAX_PIXELS``,
the setting ``data.max_image_pixels`` / ``--max-image-pixels``) is refused before any pixel is decoded.
Every failure is an :class:`ImageDecodeError` naming the file.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import stat
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edge_export.core.errors import EdgeExportError
from edge_export.core.records.preprocessing import RESIZE_METHODS as RESIZE_NAMES
from edge_export.core.records.preprocessing import parse_pixel_method
from edge_export.core.untrusted import DEFAULT_MAX_IMAGE_PIXELS, is_regular_file, printable

# Images larger than this (width x height, from the header) are refused before decoding: a 109 KB PNG can
# declare 30000 x 30000 pixels (2.7 GB as RGB). 64 megapixels is e.g. 8000 x 8000, or a 9248 x 6936 photo.
DEFAULT_MAX_PIXELS = DEFAULT_MAX_IMAGE_PIXELS  # the default of the data.max_image_pixels setting
PIXEL_LIMIT_SETTING = (
    "data.max_image_pixels (build/train/export/bench), --max-image-pixels (predict), max_pixels= (Classifier)"
)

# What Pillow raises on malformed files besides OSError (its plugins parse with struct, index into
# tables, divide by header fields, ...): any of these means "this file is not a usable image".
_DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    MemoryError,
    Image.DecompressionBombError,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

RESIZE_METHODS = {  # the preprocessing record's resize names (core.records.preprocessing) -> Pillow's filters
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "area": Image.Resampling.BOX,
}
assert tuple(RESIZE_METHODS) == RESIZE_NAMES, "every resize name of the preprocessing record has a filter"

ImageInput = str | Path | Image.Image | np.ndarray


class ImageDecodeError(EdgeExportError):
    """An image file that cannot be decoded (unreadable, truncated, not an image)."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def max_pixels_value(value: object = None) -> int:
    """The pixel limit to apply: ``value`` (a positive integer) or the default for None."""
    if value is None:
        return DEFAULT_MAX_PIXELS
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EdgeExportError(
            f"the image pixel limit must be a positive integer (width x height), got {printable(repr(value), 80)}",
            hint=f"set {PIXEL_LIMIT_SETTING}",
        )
    return value


def check_pixel_limit(image: Image.Image, max_pixels: int | None, path: str | Path | None = None) -> None:
    """Refuse an opened (not yet decoded) image whose declared size is over the limit."""
    limit = max_pixels_value(max_pixels)
    width, height = image.size
    if width * height > limit:
        raise _too_large(f"{width}x{height} = ", width * height, limit, path)


def _too_large(size: str, pixels: int, limit: int, path: str | Path | None) -> ImageDecodeError:
    return ImageDecodeError(
        f"image is {size}{_amount(pixels)}, over the limit of {_amount(limit)} "
        "(a decompression bomb, or a very large photo): not decoded",
        path=path,
        hint=f"shrink the image, or raise the limit: {PIXEL_LIMIT_SETTING}",
    )


def _amount(pixels: int) -> str:
    return f"{pixels / 1e6:.4g} megapixels" if pixels >= 1_000_000 else f"{pixels} pixels"


class ImageScan(NamedTuple):
    """The image files below a folder, and what was left out (hidden, or not a regular file)."""

    files: list[Path]  # sorted
    hidden: list[Path]  # hidden files and folders (a name starting with '.'), not looked into
    irregular: list[Path]  # image-named FIFOs, devices, sockets, broken links: never opened


def find_images(folder: Path) -> ImageScan:
    """Image files anywhere below ``folder``, following links; hidden names and non-regular files are left out.

    Folder links are followed, but every real folder is visited once (a link loop or a second link to
    the same folder adds nothing).
    """
    files: list[Path] = []
    hidden: list[Path] = []
    irregular: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [Path(folder)]
    while stack:  # iterative: a deep tree cannot exhaust the call stack
        directory = stack.pop()
        try:
            st = os.stat(directory)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                if _is_dir(entry) or path.suffix.lower() in IMAGE_EXTENSIONS:
                    hidden.append(path)
            elif _is_dir(entry):
                stack.append(path)
            elif is_image_file(path):
                (files if is_regular_file(path) else irregular).append(path)
    # hidden names below a hidden folder are never seen: the folder itself is reported
    return ImageScan(sorted(files), sorted(hidden), sorted(irregular))


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows links
    except OSError:
        return False


# EXIF orientations (tag 0x0112) that need a transpose, and those of them that swap width and height.
_ORIENTATION_TAG = 0x0112
_TRANSPOSED = (2, 3, 4, 5, 6, 7, 8)
_SWAPS_SIDES = (5, 6, 7, 8)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation that needs a transpose (2-8), else 1; 0 for an EXIF block that fails to parse."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS:  # a malformed EXIF block: ImageOps.exif_transpose below reports it like before
        return 0
    return value if value in _TRANSPOSED else 1


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright RGB: apply EXIF rotation, take the first frame, flatten alpha on white."""
    if getattr(image, "is_animated", False):
        image.seek(0)
    image.load()  # some formats (PNG) keep their EXIF after the pixels
    if _orientation(image) != 1:  # exif_transpose copies even an upright image: only call it when it turns
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


def open_rgb(path: str | Path, max_pixels: int | None = None, size: tuple[int, int] | None = None) -> Image.Image:
    """Decode a file fully into an upright RGB image, or raise ImageDecodeError naming the file.

    Only a regular file is read (a FIFO or device is refused at once); an image over ``max_pixels``
    (default ``DEFAULT_MAX_PIXELS``) is refused from its header, before decoding. With ``size`` =
    (height, width), the upright size it will be resized to, a JPEG of at least twice that size is
    decoded at a reduced DCT scale that still covers it (see the module doc); without, at full size.
    """
    path = Path(path)
    limit = max_pixels_value(max_pixels)
    try:
        with _open_regular(path) as file, Image.open(file) as image:
            check_pixel_limit(image, limit, path)
            if size is not None and image.format in ("JPEG", "MPO"):  # MPO: a phone's JPEG with extra frames
                _draft(image, size)
            image.load()  # force a full decode: truncated files fail here, not later
            return to_rgb(image)
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError("image file not found", path=path, hint="check the path") from None
    except Image.DecompressionBombError as exc:  # Pillow's own check ran first, in Image.open
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        if declared and int(declared.group(1)) > limit:
            raise _too_large("", int(declared.group(1)), limit, path) from None
        raise ImageDecodeError(  # over Pillow's own limit (2 x PIL.Image.MAX_IMAGE_PIXELS), within ours
            f"image is too large to decode safely ({printable(str(exc), 160)})",
            path=path,
            hint="shrink the image; a limit above Pillow's own needs PIL.Image.MAX_IMAGE_PIXELS raised too",
        ) from None
    except _DECODE_ERRORS as exc:
        # Pillow's "cannot identify image file <_CappedReader name=3>" names our file object, not the file
        detail = (
            "not an image format Pillow reads"
            if isinstance(exc, UnidentifiedImageError)
            else (f"{type(exc).__name__}: {printable(str(exc), 160)}")
        )
        raise ImageDecodeError(
            f"cannot decode image ({detail})", path=path, hint="re-save it as JPEG/PNG or remove it"
        ) from None


def _draft(image: Image.Image, size: tuple[int, int]) -> None:
    """Ask the JPEG decoder for the smallest DCT scale (1, 1/2, 1/4, 1/8) whose result is still at least
    ``size`` = upright (height, width): never below the target, so resizing still only shrinks."""
    target = _reducible_to(image.size, size, _orientation(image))
    if target is not None:
        image.draft(None, target)


def _reducible_to(stored: tuple[int, int], size: tuple[int, int], orientation: int) -> tuple[int, int] | None:
    """The target (width, height) in the file's stored orientation when a stored (width, height) image is at least
    twice it both ways (a reduced DCT scale applies: both decoders' rule), else None. ``size`` is the upright
    (height, width); an image stored sideways (EXIF 5-8) has its upright height as its stored width."""
    height, width = size
    if orientation in _SWAPS_SIDES:
        height, width = width, height
    return (width, height) if stored[0] >= 2 * width and stored[1] >= 2 * height else None


# how every untrusted file is opened: read-only, and never waiting (a FIFO or a device opens at once; callers then
# refuse anything that is not a regular file)
READ_NO_WAIT = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def _open_regular(path: Path) -> _CappedReader:
    """A binary file object for ``path`` if it is a regular file; never blocks on a FIFO."""
    fd = os.open(path, READ_NO_WAIT)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
            raise ImageDecodeError(f"not a regular file ({kind}): not read", path=path, hint="pass an image file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return _CappedReader(io.FileIO(fd, "rb"), os.fstat(fd).st_size)
    except BaseException:
        os.close(fd)
        raise


class _CappedReader(io.BufferedReader):
    """Reads never ask for more than the file holds: Pillow sizes some reads by a length field in the
    file (a PNG chunk declaring 2 GB), and Python allocates the whole request before reading."""

    def __init__(self, raw: io.FileIO, size: int) -> None:
        super().__init__(raw)
        self._size = size

    def read(self, n: int | None = -1) -> bytes:
        if n is not None and n > _SMALL_READ:  # the many small reads of header parsing need no cap
            n = min(n, max(1, self._size - self.tell()))
        return super().read(n)


_SMALL_READ = 1 << 16  # Pillow reads image data in 64 KiB blocks: harmless to allocate


def resize(image: Image.Image, size: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """Resize a PIL RGB image to ``size`` = (height, width); return HxWx3 uint8."""
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), RESIZE_METHODS[method])
    return np.asarray(image, dtype=np.uint8)


def load_image(
    source: ImageInput, size: tuple[int, int], method: str = "bilinear", max_pixels: int | None = None
) -> np.ndarray:
    """Any supported input (path, PIL image, uint8 HxWx3/HxW array) -> HxWx3 uint8 at ``size``, made as ``method``
    says (a resize name, or ``decoder:resize``: ``Preprocessing.pixel_method``).

    Files and PIL images over ``max_pixels`` (default ``DEFAULT_MAX_PIXELS``) are refused before decoding.
    """
    decoder, method = parse_pixel_method(method)
    cv2 = opencv() if decoder == "opencv" else None
    if cv2 is not None:
        if isinstance(source, (str, Path)):
            fast = _opencv_jpeg(cv2, source, size, max_pixels)
            if fast is not None:
                return _opencv_resize(cv2, fast, size, method)
        if (
            isinstance(source, np.ndarray)
            and source.dtype == np.uint8
            and source.ndim == 3
            and source.shape[2] == 3
            and 0 not in source.shape
        ):
            return _opencv_resize(cv2, source, size, method)  # a frame: no round trip through a PIL image
        return _opencv_resize(cv2, np.asarray(_rgb_image(source, size, max_pixels), dtype=np.uint8), size, method)
    return resize(_rgb_image(source, size, max_pixels), size, method)


def _rgb_image(source: ImageInput, size: tuple[int, int], max_pixels: int | None) -> Image.Image:
    """What Pillow makes of any input, before the resize: an upright RGB image (the checks of ``load_image``)."""
    if isinstance(source, (str, Path)):
        image = open_rgb(source, max_pixels, size)
    elif isinstance(source, Image.Image):
        check_pixel_limit(source, max_pixels, getattr(source, "filename", None) or None)
        image = to_rgb(source)
    elif isinstance(source, np.ndarray):
        image = _array_to_image(source)
    else:
        raise EdgeExportError(
            f"unsupported image input of type {type(source).__name__}",
            hint="pass a file path, a PIL.Image or a uint8 array of shape HxWx3",
        )
    return image


_OPENCV: list[ModuleType | None] = []  # [cv2 or None], imported once


def opencv_installed() -> bool:
    """Whether the opencv decoder can run here (without importing OpenCV, or warning)."""
    return bool(_OPENCV[0]) if _OPENCV else importlib.util.find_spec("cv2") is not None


def opencv() -> ModuleType | None:
    """The cv2 module, or None (not installed: said once, and Pillow does the work)."""
    if not _OPENCV:
        module: ModuleType | None
        try:
            import cv2  # lazy: OpenCV is optional (the video and train extras) and 80 MB; only its decoder needs it

            module = cv2
        except ImportError:
            warnings.warn(
                "a model made with the opencv decoder runs through Pillow here: OpenCV is not installed "
                "(pip install 'edge-export[video]' for the same pixels as in training, about 3x faster)",
                stacklevel=3,
            )
            module = None
        _OPENCV.append(module)
    return _OPENCV[0]


_OPENCV_INTERPOLATION = {
    "bilinear": "INTER_LINEAR",
    "bicubic": "INTER_CUBIC",
    "nearest": "INTER_NEAREST",
    "area": "INTER_AREA",
}
assert tuple(_OPENCV_INTERPOLATION) == RESIZE_NAMES, "every resize name has an OpenCV interpolation"


def _opencv_resize(cv2: ModuleType, pixels: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """cv2.resize to ``size``. An image at least twice the size both ways is first averaged down by a whole factor
    (INTER_AREA: what the JPEG path's reduced DCT scale does), so bilinear and bicubic never skip pixels (they
    sample 2 or 4 per output pixel, whatever the factor: aliasing where Pillow's filters widen)."""
    height, width = size
    if pixels.shape[:2] == (height, width):
        return np.ascontiguousarray(pixels)
    factor = min(pixels.shape[0] // height, pixels.shape[1] // width)
    if factor >= 2 and method in ("bilinear", "bicubic"):
        reduced = (-(-pixels.shape[1] // factor), -(-pixels.shape[0] // factor))
        pixels = cv2.resize(pixels, reduced, interpolation=cv2.INTER_AREA)
    resized: np.ndarray = cv2.resize(pixels, (width, height), interpolation=getattr(cv2, _OPENCV_INTERPOLATION[method]))
    return resized


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start of frame (DHT, JPG, DAC are not)
MAX_FAST_JPEG_BYTES = 64 * 1024 * 1024  # larger files take Pillow's path (which reads only what it decodes)


def jpeg_header(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from a JPEG's start-of-frame segment, walking the marker segments; None when
    ``data`` is not a JPEG or its header is damaged (Pillow then says what is wrong)."""
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2 or marker in (0xD9, 0xDA):  # the image ends or its scan starts before any frame header
            return None
        if marker in _SOF_MARKERS:
            if length < 8 or i + 10 > n:
                return None
            height, width = (data[i + 5] << 8) | data[i + 6], (data[i + 7] << 8) | data[i + 8]
            return (width, height, data[i + 9]) if width and height else None
        i += 2 + length
    return None


def _opencv_jpeg(cv2: ModuleType, path: str | Path, size: tuple[int, int], max_pixels: int | None) -> np.ndarray | None:
    """A JPEG decoded by OpenCV (upright RGB, at the reduced DCT scale Pillow's draft would take), after the checks
    of Pillow's path (a regular file, the pixel limit from the header); None for anything else, or anything OpenCV
    declines (Pillow's path then decodes it, or raises what is wrong, naming the file)."""
    path = Path(path)
    limit = max_pixels_value(max_pixels)
    try:
        fd = os.open(path, READ_NO_WAIT)
    except OSError:
        return None  # not found, no permission: Pillow's path says which
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FAST_JPEG_BYTES:
            return None
        data = os.read(fd, st.st_size) if st.st_size else b""
    except OSError:
        return None
    finally:
        os.close(fd)
    header = jpeg_header(data)
    if header is None or header[2] not in (1, 3):  # CMYK and odd layouts: Pillow converts them
        return None
    width, height, _ = header
    if width * height > limit:
        raise _too_large(f"{width}x{height} = ", width * height, limit, path)
    flags = cv2.IMREAD_COLOR_RGB
    if width >= 2 * min(size) and height >= 2 * min(size):  # a reduced scale may apply: it depends on the turn
        try:
            with Image.open(io.BytesIO(data)) as image:  # only then the EXIF orientation (most photos skip this)
                orientation = _orientation(image)
        except _DECODE_ERRORS:
            return None
        if orientation == 0:
            return None
        target = _reducible_to((width, height), size, orientation)
        for scale, reduced in (
            (8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
            (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
            (2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
        ):
            if target is not None and -(-width // scale) >= target[0] and -(-height // scale) >= target[1]:
                flags |= reduced  # the grayscale bit is the "reduced" bit; IMREAD_COLOR_RGB keeps colour
                break
    try:
        pixels: np.ndarray | None = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None
    if pixels is None or pixels.ndim != 3 or pixels.shape[2] != 3:
        return None
    return pixels


class Decoded(NamedTuple):
    pixels: np.ndarray  # uint8 N x H x W x 3, the readable files in order
    kept: list[int]  # their indices in the input
    errors: dict[int, str]  # index of each unreadable file -> why


def decode_many(
    files: list[Path] | tuple[Path, ...],
    size: tuple[int, int],
    method: str = "bilinear",
    max_pixels: int | None = None,
    workers: int | None = None,
) -> Decoded:
    """Decode and resize many files on threads (Pillow releases the GIL): the one batch decoder that
    training, export checks and bench share. Unreadable files (and those over ``max_pixels``) are skipped,
    each with the reason."""
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    errors: dict[int, str] = {}

    def decode(index: int) -> np.ndarray | None:
        try:
            return load_image(files[index], size, method, max_pixels)
        except ImageDecodeError as exc:
            errors[index] = exc.message
            return None

    with ThreadPoolExecutor(workers) as pool:
        images = list(pool.map(decode, range(len(files))))
    kept = [i for i, im in enumerate(images) if im is not None]
    readable = [im for im in images if im is not None]  # the images of ``kept``, in order
    pixels = np.stack(readable) if readable else np.zeros((0, *size, 3), np.uint8)
    return Decoded(pixels, kept, dict(sorted(errors.items())))


def skipped_text(files: list[Path] | tuple[Path, ...], errors: dict[int, str], limit: int = 20) -> str:
    """The list of skipped files with their reasons, for one warning (bounded, printable)."""
    shown = "\n  ".join(f"{printable(files[i])}: {printable(why, 200)}" for i, why in list(errors.items())[:limit])
    more = f"\n  ... and {len(errors) - limit} more" if len(errors) > limit else ""
    return f"  {shown}{more}"


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise EdgeExportError(
            f"image array has dtype {array.dtype}, expected uint8 pixel values 0-255",
            hint="convert with array.astype('uint8') after scaling to 0-255",
        )
    if array.ndim in (2, 3) and (array.shape[0] == 0 or array.shape[1] == 0):
        raise EdgeExportError(
            f"image array has shape {array.shape}: an image with no pixels",
            hint="pass an image at least 1x1 (HxWx3, uint8)",
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
