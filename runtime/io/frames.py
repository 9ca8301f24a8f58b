"""Survey frames for source detection: the pixels to search, the pixels to cut out, the WCS.

A frame is a FITS image (2-D, or 3 colour planes; with or without a celestial WCS) or an 8- or
16-bit PNG, TIFF or JPEG. Detection searches one float32 plane: the FITS data (the planes'
mean for colour) or the file's native grey values (the channels' mean for colour), at full
bit depth. Cutouts are taken from what ``flare classify`` decodes a file to, so a cutout
classified here and the same pixels saved as a file and classified there give one answer:
FITS cutouts are float data stretched cutout by cutout (as each training image is), Pillow
cutouts are crops of the frame's 8-bit RGB.

Frames are large, so memory is planned before anything is allocated: :func:`frame_size` reads
only the header, and a frame whose working set would not fit in the memory available is
refused with one line instead of driving the machine into swap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from flare.runtime.core.preprocess import StretchSpec, planes_to_rgb, to_rgb
from flare.runtime.foundation.errors import ImageDecodeError
from flare.runtime.io.images import check_pixels, decode_named, is_fits, pillow_errors, read_fits_image


@dataclass
class Frame:
    """One decoded frame: ``search`` (H x W float32, for detection; detection overwrites it),
    ``pixels`` (what cutouts come from: (planes, H, W) float32 for FITS, H x W x 3 uint8
    otherwise) and ``wcs`` (an astropy celestial WCS, or None)."""

    search: np.ndarray
    pixels: np.ndarray
    wcs: Any
    fits: bool

    def cutout(self, box: tuple[int, int, int, int], stretch: StretchSpec) -> np.ndarray:
        """HxWx3 uint8 of the pixels in ``box`` (x0, x1, y0, y1, end-exclusive), as
        ``flare classify`` decodes the same pixels saved as a file."""
        x0, x1, y0, y1 = box
        if self.fits:
            return planes_to_rgb(self.pixels[:, y0:y1, x0:x1].astype(np.float64), stretch)
        return np.ascontiguousarray(self.pixels[y0:y1, x0:x1])

    def raw(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """The frame's own values in ``box``: what to save to classify the cutout as a file."""
        x0, x1, y0, y1 = box
        return self.pixels[:, y0:y1, x0:x1] if self.fits else self.pixels[y0:y1, x0:x1]


def available_memory() -> int | None:
    """Bytes of memory the system can give without swapping (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def frame_size(path: Path) -> tuple[int, int, int]:
    """(planes, height, width) of a frame from its header alone."""
    def peek(p: Path) -> tuple[int, int, int]:
        if is_fits(p):
            from astropy.io import fits

            try:
                with fits.open(p, memmap=True, lazy_load_hdus=True) as hdul:
                    for hdu in hdul:
                        shape = tuple(int(n) for n in (getattr(hdu, "shape", ()) or ()))
                        if hdu.is_image and len(shape) >= 2:
                            planes = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
                            return planes, shape[-2], shape[-1]
            except (OSError, ValueError, TypeError, IndexError, EOFError) as exc:
                raise ImageDecodeError(f"is not a readable FITS file ({type(exc).__name__}: {exc})") from exc
            raise ImageDecodeError("is FITS but holds no 2-D image")
        with pillow_errors(OSError), Image.open(p) as img:
            return len(img.getbands()), img.height, img.width
    return decode_named(Path(path), peek)


def check_memory(path: Path, bytes_per_pixel: int, max_pixels: int, memory: int | None) -> None:
    """Refuse a frame over ``max_pixels`` or whose working set (``bytes_per_pixel`` a pixel,
    plus its cutout planes) exceeds ``memory`` bytes, before any of its pixels is read."""
    planes, height, width = frame_size(path)
    try:
        check_pixels(width, height, max_pixels)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{path}: {exc}") from None
    need = height * width * (bytes_per_pixel + 4 * planes)
    if memory is not None and need > memory:
        raise ImageDecodeError(f"{path}: is {width} x {height} pixels; detecting sources on it needs about "
                               f"{need / 2**30:.1f} GiB, more than the {memory / 2**30:.1f} GiB of memory free now; "
                               "run it on a larger machine or split it into tiles")


def read_frame(path: Path, stretch: StretchSpec, max_pixels: int) -> Frame:
    """Decode a frame (see the module docstring); every failure is an :class:`ImageDecodeError` naming it."""
    return decode_named(Path(path), lambda p: _read_fits(p, max_pixels) if is_fits(p) else _read_pil(p, max_pixels,
                                                                                                         stretch))


def _read_fits(path: Path, max_pixels: int) -> Frame:
    planes, header = read_fits_image(path, max_pixels, dtype=np.float32)
    search = planes[0].copy() if len(planes) == 1 else planes.mean(axis=0, dtype=np.float32)
    return Frame(np.ascontiguousarray(search), planes, celestial_wcs(header), fits=True)


def _read_pil(path: Path, max_pixels: int, stretch: StretchSpec) -> Frame:
    with pillow_errors(OSError), Image.open(path) as img:
        check_pixels(img.width, img.height, max_pixels)
        img.load()
        native = np.asarray(img)
        if native.dtype == bool or native.dtype.kind not in "uif":
            native = np.asarray(img.convert("L"))
        search = native.astype(np.float32) if native.ndim == 2 else \
            native[..., :3].mean(axis=2, dtype=np.float32)
        rgb = to_rgb(img, stretch)
    return Frame(np.ascontiguousarray(search), rgb, None, fits=False)


def celestial_wcs(header: Any) -> Any:
    """The celestial WCS of a FITS header, or None when it has none; a WCS astropy cannot
    read is an :class:`ImageDecodeError` (a catalogue with wrong coordinates is worse than none)."""
    from astropy.wcs import WCS

    if not any(key.startswith("CTYPE") for key in header):
        return None
    try:  # astropy's warnings about fixable headers are off (read_fits_image turned them off)
        wcs = WCS(header).celestial
    except Exception as exc:  # astropy raises many types for a malformed WCS
        raise ImageDecodeError(f"has a WCS astropy cannot read ({type(exc).__name__}: {exc})") from exc
    return wcs if wcs.has_celestial and wcs.naxis == 2 else None
