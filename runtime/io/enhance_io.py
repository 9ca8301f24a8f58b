"""Reading images for enhancement at their own bit depth, and writing the enhanced result.

Classification reduces every file to 8-bit RGB (:mod:`flare.runtime.io.images`); enhancement
must give back what it was given. So a :class:`Picture` keeps the pixels as stored: 8- or
16-bit grey or RGB (PNG, TIFF, JPEG; transparency composited on black), or scientific data
(FITS, float TIFF) in its own units with one invertible :class:`UnitMap` per plane. It hands
the enhancer tiles in the network's [0, 1] and turns finished output rows back:

* PNG and JPEG give PNG at the input's bit depth, streamed row band by row band
  (:class:`~flare.runtime.io.pngwrite.PngWriter`; JPEG is not re-compressed lossily);
* TIFF gives TIFF at the input's bit depth (tifffile; 16-bit colour needs it);
* FITS gives FITS: float32 in the input's units, the header kept with its WCS rescaled
  (:func:`~flare.runtime.io.fits_wcs.rescale_wcs`) and a HISTORY card, blank (NaN) pixels kept
  blank. Rows are written straight into the file at their offsets, so the output is never
  held in memory. ``display`` adds a stretched 8-bit PNG beside it.

Every output is written to ``<name>.part`` and renamed when complete, so an existing output
is always a finished one (which is what lets ``flare enhance`` resume by skipping it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from flare.runtime.core.preprocess import ENHANCE_STRETCH, StretchSpec, UnitMap, to_rgb
from flare.runtime.foundation.errors import ImageDecodeError
from flare.runtime.io.images import DEFAULT_MAX_PIXELS, check_pixels, decode_named, is_fits, pillow_errors, read_fits_image
from flare.runtime.io.pngwrite import PngWriter



@dataclass
class Picture:
    """One decoded image: pixels as stored, and how they map to the network's [0, 1].

    ``pixels`` is ``(H, W)`` or ``(H, W, 3)`` uint8 / uint16 for ordinary images, and
    ``(planes, H, W)`` float for scientific data (``maps`` then holds one map per plane).
    """

    path: Path
    kind: str  # "png", "tiff" or "fits"
    pixels: np.ndarray
    planes: int
    model_channels: int
    maps: list[UnitMap] = field(default_factory=list)
    header: Any = None  # astropy.io.fits.Header for FITS
    blank: np.ndarray | None = None  # (H, W) True where a FITS plane had no finite value

    @property
    def scientific(self) -> bool:
        return bool(self.maps)

    @property
    def height(self) -> int:
        return self.pixels.shape[1] if self.scientific else self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[2] if self.scientific else self.pixels.shape[1]

    @property
    def bits(self) -> int:
        return 32 if self.scientific else self.pixels.dtype.itemsize * 8

    @property
    def megapixels(self) -> float:
        return self.height * self.width / 1e6

    def tile(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """``(C, h, w)`` float32 network input in [0, 1] for the model's C channels."""
        if self.scientific:
            t = np.stack([m.forward(p[y0:y1, x0:x1]) for m, p in zip(self.maps, self.pixels)])
        else:
            t = self.pixels[y0:y1, x0:x1].astype(np.float32) * np.float32(1.0 / np.iinfo(self.pixels.dtype).max)
            t = t[None] if t.ndim == 2 else t.transpose(2, 0, 1)
        if t.shape[0] != self.model_channels:  # grey into an RGB model, or colour into a grey one
            t = np.repeat(t.mean(axis=0, keepdims=True), self.model_channels, axis=0)
        return np.ascontiguousarray(t, dtype=np.float32)

    def to_planes(self, rows: np.ndarray) -> np.ndarray:
        """Model output rows ``(C, n, W')`` as the picture's planes ``(planes, n, W')``."""
        return rows.mean(axis=0, keepdims=True) if rows.shape[0] != self.planes else rows


def read_picture(path: Path, model_channels: int, stretch: StretchSpec = ENHANCE_STRETCH,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Decode ``path`` for enhancement or raise :class:`ImageDecodeError` naming it."""
    return decode_named(Path(path), lambda p: _read_fits(p, model_channels, stretch, max_pixels) if is_fits(p)
                        else _read_raster(p, model_channels, stretch, max_pixels))


def _read_raster(path: Path, channels: int, stretch: StretchSpec, max_pixels: int) -> Picture:
    suffix = path.suffix.lower()
    kind = "tiff" if suffix in (".tif", ".tiff") else "png"
    with pillow_errors(), Image.open(path) as img:
        check_pixels(img.width, img.height, max_pixels)
        rawmode = str(img.tile[0][3][0] if img.tile and isinstance(img.tile[0][3], tuple) else img.tile[0][3]) \
            if img.tile else ""
        sixteen_colour = img.mode in ("RGB", "RGBA") and ";16" in rawmode
        if sixteen_colour:
            pixels = _read_16bit_colour(path, kind)
        elif img.mode in ("I;16", "I;16B", "I;16L"):
            pixels = np.asarray(img).astype(np.uint16)
        elif img.mode == "L":
            pixels = np.asarray(img, dtype=np.uint8)
        elif img.mode in ("I", "F"):  # 32-bit integer or float TIFF: scientific data
            data = np.asarray(img, dtype=np.float32)[None]
            return Picture(path, "tiff", data, 1, channels, [UnitMap(data[0], stretch)],
                           blank=~np.isfinite(data[0]))
        else:
            pixels = to_rgb(img)
    if pixels.ndim == 3 and pixels.shape[2] == 4:  # 16-bit RGBA: composite on black like every alpha
        alpha = pixels[:, :, 3:].astype(np.float32) / 65535.0
        pixels = np.round(pixels[:, :, :3] * alpha).astype(np.uint16)
    return Picture(path, kind, pixels, 1 if pixels.ndim == 2 else 3, channels)


def _read_16bit_colour(path: Path, kind: str) -> np.ndarray:
    """16-bit RGB(A), which Pillow reads only as 8-bit: pypng for PNG, tifffile for TIFF."""
    try:
        if kind == "tiff":
            import tifffile

            pixels = tifffile.imread(path)
        else:
            import png

            width, height, rows, info = png.Reader(filename=str(path)).asDirect()
            pixels = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, info["planes"])
    except ImportError as exc:
        raise ImageDecodeError(f"is 16-bit colour, which needs {'tifffile' if kind == 'tiff' else 'pypng'}, part "
                               "of the base install: pip install --force-reinstall flare-edge") from exc
    except Exception as exc:  # noqa: BLE001 - either library's own decode errors
        raise ImageDecodeError(f"could not be decoded as 16-bit colour ({type(exc).__name__}: {exc})") from exc
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4) or pixels.dtype != np.uint16:
        raise ImageDecodeError(f"decodes to {pixels.dtype} {pixels.shape}, not 16-bit RGB")
    return pixels


def _read_fits(path: Path, channels: int, stretch: StretchSpec, max_pixels: int) -> Picture:
    # float32 in native byte order: one copy the size of the input (the output is float32 too)
    data, header = read_fits_image(path, max_pixels, np.float32)
    blank = ~np.isfinite(data).all(axis=0)
    return Picture(path, "fits", data, data.shape[0], channels, [UnitMap(p, stretch) for p in data], header,
                   blank if blank.any() else None)


def output_name(relative: Path) -> Path:
    """The output's path relative to ``--out``: the same name, except that formats written as
    PNG (JPEG, BMP, WebP) get ``.png`` and ``.fits.gz`` becomes ``.fits`` (written uncompressed)."""
    name = relative.name
    lower = name.lower()
    if is_fits(relative):
        return relative.with_name(name[:-3] if lower.endswith(".gz") else name)
    if not lower.endswith((".png", ".tif", ".tiff")):
        name = name.rsplit(".", 1)[0] + ".png"
    return relative.with_name(name)


def probe_pixels(path: Path) -> int:
    """Width x height from the file's header without decoding it (0 if unreadable): for progress."""
    try:
        if is_fits(path):
            from astropy.io import fits

            with fits.open(path, memmap=False) as hdul:
                for hdu in hdul:
                    if hdu.is_image and hdu.header.get("NAXIS", 0) >= 2:
                        return int(hdu.header["NAXIS1"]) * int(hdu.header["NAXIS2"])
            return 0
        with Image.open(path) as img:
            return img.width * img.height
    except Exception:  # noqa: BLE001 - the real read reports the problem
        return 0


class OutputWriter:
    """Receives finished output rows (the enhancer's sink) and writes them atomically.

    Use as a context manager: the file appears under its name only when every row arrived.
    """

    def __init__(self, picture: Picture, path: Path, scale: int, display: bool = False) -> None:
        self.picture, self.path, self.scale = picture, Path(path), scale
        self.height, self.width = picture.height * scale, picture.width * scale
        self.display_path = self.path.with_suffix(".png") if display and picture.kind == "fits" else None
        self._parts: list[tuple[Path, Path]] = []
        self._files: list[BinaryIO] = []
        self._png: PngWriter | None = None
        self._display: PngWriter | None = None
        self._array: np.ndarray | None = None
        self._data_offset = 0

    # -- opening ------------------------------------------------------------------------------

    def _part(self, final: Path) -> BinaryIO:
        final.parent.mkdir(parents=True, exist_ok=True)
        part = final.with_name(final.name + ".part")
        handle = open(part, "wb")
        self._parts.append((part, final))
        self._files.append(handle)
        return handle

    def __enter__(self) -> OutputWriter:
        p = self.picture
        if p.kind == "fits":
            self._open_fits(self._part(self.path))
        elif p.kind == "png":
            self._png = PngWriter(self._part(self.path), self.width, self.height, p.planes, p.bits)
        else:  # TIFF: tifffile writes the whole array at the end
            dtype = np.float32 if p.scientific else p.pixels.dtype
            shape = (self.height, self.width) if p.planes == 1 else (self.height, self.width, 3)
            self._array = np.empty(shape, dtype=dtype)
        if self.display_path is not None:
            self._display_maps = [UnitMap(plane, StretchSpec()) for plane in p.pixels]
            self._display = PngWriter(self._part(self.display_path), self.width, self.height, p.planes, 8)
        return self

    def _open_fits(self, handle: BinaryIO) -> None:
        from astropy.io import fits

        from flare.runtime.io.fits_wcs import rescale_wcs

        p = self.picture
        shape = (p.planes, self.height, self.width) if p.planes == 3 else (self.height, self.width)
        hdu = fits.PrimaryHDU()
        skip = {"SIMPLE", "BITPIX", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "BSCALE", "BZERO", "BLANK",
                "CHECKSUM", "DATASUM", "EXTNAME", "EXTVER", "INHERIT"}
        for card in p.header.cards:
            key = card.keyword
            if key in skip or key.startswith("NAXIS") or key in ("", "END"):
                continue
            hdu.header.append((key, card.value, card.comment), end=True)
        rescale_wcs(hdu.header, self.scale, str(p.path))
        hdu.header["BITPIX"] = -32
        hdu.header["NAXIS"] = len(shape)
        for axis, size in enumerate(reversed(shape), start=1):
            hdu.header.set(f"NAXIS{axis}", size, after="NAXIS" if axis == 1 else f"NAXIS{axis - 1}")
        hdu.header.add_history(f"flare enhance: super-resolved x{self.scale} from {p.path.name} "
                               f"({p.width}x{p.height}); values in the input's units; WCS rescaled")
        hdu.header.tofile(handle, padding=True)
        self._data_offset = handle.tell()
        data_bytes = int(np.prod(shape)) * 4
        handle.truncate(self._data_offset + -(-data_bytes // 2880) * 2880)  # FITS pads with zeros to 2880

    # -- rows ---------------------------------------------------------------------------------

    def __call__(self, first: int, rows: np.ndarray) -> None:
        """Write output rows ``[first, first + n)`` given as ``(C, n, W)`` in [0, 1].

        Converted a few rows at a time, so the temporaries stay small beside the band.
        """
        step = max(1, (1 << 22) // max(rows.shape[0] * rows.shape[2], 1))  # about 16 MiB of float32
        for k in range(0, rows.shape[1], step):
            self._write(first + k, rows[:, k:k + step])

    def _write(self, first: int, rows: np.ndarray) -> None:
        p = self.picture
        planes = p.to_planes(rows)
        n = planes.shape[1]
        if p.scientific:
            values = np.stack([m.inverse(plane) for m, plane in zip(p.maps, planes)])
            if p.blank is not None:
                blank = p.blank[np.arange(first, first + n) // self.scale][:, np.arange(self.width) // self.scale]
                values[:, blank] = np.nan
            if p.kind == "fits":
                handle = self._files[0]
                plane_bytes = self.height * self.width * 4
                for k, plane in enumerate(values):
                    handle.seek(self._data_offset + k * plane_bytes + first * self.width * 4)
                    handle.write(plane.astype(">f4").tobytes())
            else:
                self._array[first:first + n] = values[0]
            if self._display is not None:
                shown = np.stack([np.round(m.forward(v) * 255.0) for m, v in zip(self._display_maps, values)])
                self._display.write(self._layout(shown.astype(np.uint8)))
            return
        top = float(np.iinfo(p.pixels.dtype).max)
        quantised = np.round(np.clip(planes, 0.0, 1.0) * top).astype(p.pixels.dtype)
        if self._png is not None:
            self._png.write(self._layout(quantised))
        else:
            self._array[first:first + n] = self._layout(quantised)

    @staticmethod
    def _layout(planes: np.ndarray) -> np.ndarray:
        """``(planes, n, W)`` -> ``(n, W)`` or ``(n, W, 3)``."""
        return planes[0] if planes.shape[0] == 1 else planes.transpose(1, 2, 0)

    # -- closing ------------------------------------------------------------------------------

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            if exc_type is None:
                for writer in (self._png, self._display):
                    if writer is not None:
                        writer.close()
                if self._array is not None:
                    import tifffile

                    tifffile.imwrite(self._files_open_tiff(), self._array,
                                     photometric="rgb" if self._array.ndim == 3 else "minisblack")
                for handle in self._files:
                    handle.flush()
                    os.fsync(handle.fileno())
        finally:
            for handle in self._files:
                handle.close()
            if exc_type is None:
                for part, final in self._parts:
                    os.replace(part, final)
            else:
                for part, _ in self._parts:
                    part.unlink(missing_ok=True)

    def _files_open_tiff(self) -> BinaryIO:
        return self._part(self.path)
