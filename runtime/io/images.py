"""Decoding image files into HxWx3 uint8, with errors that name the file.

PNG, JPEG and TIFF go through Pillow; FITS goes through astropy with the shared stretch of
:mod:`flare.runtime.core.preprocess`. Every failure (zero-byte, truncated, not an image, too many
pixels, NaN-only, unconvertible channels) becomes an :class:`ImageDecodeError` so batch
tools can record it and move on.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from flare.runtime.core.preprocess import StretchSpec, planes_to_rgb, to_rgb
from flare.runtime.foundation.errors import ImageDecodeError

T = TypeVar("T")

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
SUPPORTED_SUFFIXES = PIL_SUFFIXES + FITS_SUFFIXES

#: Above this many pixels a file is refused as a likely decompression bomb (Pillow's own
#: default warning limit; a 12k x 7k survey tile passes).
DEFAULT_MAX_PIXELS = 89_478_485

# We apply our own pixel limit, with a message that says what to do. Filters are set once at
# import: ``warnings.catch_warnings`` is not thread-safe and triage decodes in threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
_fits_warnings_silenced = False


def is_fits(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(FITS_SUFFIXES)


def is_supported(path: Path) -> bool:
    """Whether ``path`` has a suffix the decoder reads (by name only; content may still fail)."""
    return path.name.lower().endswith(SUPPORTED_SUFFIXES)


def list_images(root: Path, *, exclude: Path | None = None) -> tuple[list[str], list[str]]:
    """Supported, non-hidden files under ``root`` as sorted relative POSIX paths.

    Sorted so that runs, resumes and machines agree on the order. Hidden files and folders
    (``.git``, ``.DS_Store``, editors' temp files) are never survey data. ``exclude`` (the
    results file of a batch job) is left out in case its name looks like an image. Returns
    the paths and the folders that could not be listed, which the caller reports instead of
    silently dropping.
    """
    found: list[str] = []
    unlisted: list[str] = []
    exclude_resolved = exclude.resolve() if exclude is not None else None

    def note_unlisted(exc: OSError) -> None:
        unlisted.append(str(exc.filename))

    for dirpath, dirnames, filenames in os.walk(root, onerror=note_unlisted):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        base = Path(dirpath)
        for name in filenames:
            if name.startswith(".") or not is_supported(Path(name)):
                continue
            path = base / name
            # Resolving every file would cost a syscall per path; only a same-named one can match.
            if exclude_resolved is not None and name == exclude_resolved.name \
                    and path.resolve() == exclude_resolved:
                continue
            found.append(path.relative_to(root).as_posix())
    found.sort()
    return found, sorted(unlisted)


def load_rgb(
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    stretch: StretchSpec = StretchSpec(),
) -> np.ndarray:
    """Decode ``path`` to HxWx3 uint8 or raise :class:`ImageDecodeError` naming the file."""
    return decode_named(Path(path), lambda p: _load_fits(p, max_pixels, stretch) if is_fits(p)
                        else _load_pil(p, max_pixels, stretch))


def load_rgb_bytes(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, stretch: StretchSpec = StretchSpec()) -> np.ndarray:
    """An encoded image held in memory (a request to a server) to HxWx3 uint8, as :func:`load_rgb` decodes files."""
    if data[:9] == b"SIMPLE  =":  # every FITS file starts with this card
        return _load_fits(io.BytesIO(data), max_pixels, stretch)
    return _load_pil(io.BytesIO(data), max_pixels, stretch)


def decode_named(path: Path, decode: Callable[[Path], T]) -> T:
    """``decode(path)`` after refusing a missing or empty file; every decode error names ``path``."""
    try:
        if not path.is_file():
            raise ImageDecodeError("does not exist or is not a file")
        if path.stat().st_size == 0:
            raise ImageDecodeError("is empty (0 bytes)")
        return decode(path)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{path}: {exc}") from exc.__cause__
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"is {width} x {height} pixels, over the limit of {max_pixels:,} "
            "(a decompression bomb?); raise --max-pixels if the image is genuine"
        )
    if width < 1 or height < 1:
        raise ImageDecodeError(f"has an empty size {width} x {height}")


@contextmanager
def pillow_errors(*also: type[Exception]) -> Iterator[None]:
    """Pillow's ways of failing on a bad file, each as one :class:`ImageDecodeError` (``also``:
    more exception types that mean a damaged file to this caller, such as ``OSError``)."""
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"is too large to decode safely (a decompression bomb?): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("is not an image Pillow can read (wrong format or corrupt)") from exc
    except ImageDecodeError:
        raise
    except (ValueError, SyntaxError, EOFError, IndexError, TypeError, *also) as exc:
        raise ImageDecodeError(f"could not be decoded ({type(exc).__name__}: {exc})") from exc


def _load_pil(path: Path, max_pixels: int, stretch: StretchSpec) -> np.ndarray:
    with pillow_errors(OSError), Image.open(path) as img:
        check_pixels(img.width, img.height, max_pixels)
        img.load()
        return to_rgb(img, stretch)


def read_fits_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS,
                    dtype: type = np.float64) -> tuple[np.ndarray, object]:
    """The first image of a FITS file as ``(planes, H, W)`` of ``dtype`` (1 or 3 planes), and its header.

    Leading length-1 axes are dropped; any other cube is refused before its data is read (a
    spectral cube can be far larger than one image). Errors are :class:`ImageDecodeError`.
    """
    global _fits_warnings_silenced
    try:
        from astropy.io import fits
        from astropy.utils.exceptions import AstropyWarning
    except ImportError as exc:
        raise ImageDecodeError("is FITS, which needs astropy, part of the base install: "
                               "pip install --force-reinstall flare-edge") from exc
    if not _fits_warnings_silenced:  # non-standard headers are common; we only need pixels
        warnings.filterwarnings("ignore", category=AstropyWarning)
        _fits_warnings_silenced = True
    try:
        with fits.open(path, memmap=False) as hdul:
            for hdu in hdul:
                shape = tuple(int(n) for n in (getattr(hdu, "shape", ()) or ()))
                if not (hdu.is_image and len(shape) >= 2):
                    continue
                planes = shape[:-2]
                while planes and planes[0] == 1:
                    planes = planes[1:]
                if planes not in ((), (3,)):
                    raise ImageDecodeError(
                        f"has data of shape {shape}; expected a 2-D image or a cube of 3 planes")
                check_pixels(shape[-1], shape[-2], max_pixels)
                data = hdu.data
                if data is None:
                    continue
                if not np.issubdtype(data.dtype, np.number):
                    raise ImageDecodeError(f"has non-numeric pixels ({data.dtype})")
                return np.asarray(data, dtype=dtype).reshape((-1, *shape[-2:])), hdu.header.copy()
    except ImageDecodeError:
        raise
    except (OSError, ValueError, TypeError, IndexError, EOFError) as exc:
        raise ImageDecodeError(f"is not a readable FITS file ({type(exc).__name__}: {exc})") from exc
    raise ImageDecodeError("is FITS but holds no 2-D image")


def _load_fits(path: Path, max_pixels: int, stretch: StretchSpec) -> np.ndarray:
    return planes_to_rgb(read_fits_image(path, max_pixels)[0], stretch)
