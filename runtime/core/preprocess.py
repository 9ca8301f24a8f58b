"""The one definition of FLARE's preprocessing, shared by training and the runtime.

Training feeds the network through :func:`preprocess`, the runtime does the same, and the
bundle stores the :class:`PreprocessSpec` that was used, so an exported model sees exactly
the pixels it was trained on. Only numpy and Pillow are used: the runtime has no torch.

Steps, in order:
1. colour: any decoded image becomes 8-bit RGB (:func:`to_rgb`); transparency is composited
   on black (the sky), high bit depths are scaled down, FITS data goes through
   :func:`stretch` first.
2. resize to ``size`` x ``size`` with Pillow's bilinear filter (as torchvision's ``Resize``
   does on PIL images, which is what the FLARE authors used).
3. scale to [0, 1], subtract ``mean``, divide by ``std`` (ImageNet's by default), CHW float32.

A bundle exported with ``--fuse-preprocess`` does step 3 inside its graph
(:attr:`PreprocessSpec.fused`): the host stops after the resize and feeds HxWx3 uint8, a
quarter of the bytes to copy to a GPU and no float work on a small edge CPU.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from flare.runtime.foundation.errors import BundleError, ImageDecodeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATION = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}


#: Stretches (astropy.visualization's) a spec may name; ``softening`` sets their strength.
STRETCHES = ("asinh", "linear", "sqrt", "log")
#: Intervals: the percentile clip, or IRAF's ZScale (astropy.visualization.ZScaleInterval).
INTERVALS = ("percentile", "zscale")


@dataclass(frozen=True)
class StretchSpec:
    """How scientific (FITS, 32-bit) data becomes 8-bit: an interval, then a stretch.

    Built on :mod:`astropy.visualization`, the convention astronomers display with. The
    default (0.5-99.5 percentile clip, then asinh) keeps faint structure visible while bright
    cores do not saturate; ``softening`` sets where asinh turns from linear to logarithmic
    (astropy's ``AsinhStretch(a=1 / softening)``; for ``log``, ``LogStretch(a=softening)``).
    ``interval="zscale"`` picks IRAF's ZScale limits instead of the percentiles.
    """

    kind: str = "asinh"
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    softening: float = 10.0
    interval: str = "percentile"


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything needed to reproduce the network's input from an image file."""

    size: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    stretch: StretchSpec = field(default_factory=StretchSpec)
    #: Scaling and normalisation happen inside the model: it takes resized NHWC uint8.
    fused: bool = False

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATION:
            raise BundleError(
                f"unknown interpolation {self.interpolation!r}; "
                f"expected one of {sorted(_INTERPOLATION)}"
            )
        if self.stretch.kind not in STRETCHES:
            raise BundleError(f"unknown stretch {self.stretch.kind!r}; expected one of {', '.join(STRETCHES)}")
        if self.stretch.interval not in INTERVALS:
            raise BundleError(f"unknown interval {self.stretch.interval!r}; expected one of {', '.join(INTERVALS)}")
        if not 0 <= self.stretch.lower_percentile < self.stretch.upper_percentile <= 100:
            raise BundleError("stretch percentiles must satisfy 0 <= lower < upper <= 100")
        if not (math.isfinite(self.stretch.softening) and self.stretch.softening > 0):
            raise BundleError(f"stretch softening must be a positive number, not {self.stretch.softening}")
        if self.size < 1:
            raise BundleError(f"preprocessing size must be at least 1 px, not {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise BundleError("preprocessing mean and std need one value per RGB channel")
        if not all(math.isfinite(v) for v in self.mean) or not all(math.isfinite(v) and v > 0 for v in self.std):
            raise BundleError(f"preprocessing mean must be finite and std positive, not mean {list(self.mean)} "
                              f"std {list(self.std)}")

    def to_dict(self) -> dict[str, Any]:
        """The manifest form (``preprocessing`` in manifest.json)."""
        d = asdict(self)
        d.update(color="RGB", layout="NHWC" if self.fused else "NCHW", dtype="uint8" if self.fused else "float32",
                 scale=1.0 / 255.0, alpha="composite_on_black")
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessSpec":
        """Read the manifest form; refuse what this runtime cannot reproduce."""
        try:
            fused = bool(d.get("fused", False))
            layout, dtype = ("NHWC", "uint8") if fused else ("NCHW", "float32")
            if d.get("color", "RGB") != "RGB" or d.get("layout", layout) != layout or d.get("dtype", dtype) != dtype:
                raise BundleError(f"preprocessing: this runtime feeds RGB {layout} {dtype} "
                                  f"{'(normalised inside the model)' if fused else ''}, not "
                                  f"{d.get('color')} {d.get('layout')} {d.get('dtype')}")
            return cls(
                fused=fused,
                size=int(d["size"]),
                interpolation=str(d.get("interpolation", "bilinear")),
                mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
                std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
                stretch=StretchSpec(**d.get("stretch", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"preprocessing section is malformed: {exc}") from exc


#: How enhancement maps scientific data to the network's [0, 1]: no clipping (0th to 100th
#: percentile, so the inverse restores every value), asinh so faint sky is not crushed to 0.
ENHANCE_STRETCH = StretchSpec(kind="asinh", lower_percentile=0.0, upper_percentile=100.0, softening=10.0)


@dataclass(frozen=True)
class EnhanceSpec:
    """How an ``enhance`` bundle is fed, and how its output maps back to pixels.

    The network takes NCHW float32 in [0, 1] (8- and 16-bit images divided by their full
    scale; FITS and float data through ``stretch``, whose inverse is applied to the output)
    and returns the same range ``scale`` times larger, which is clipped to [0, 1]. An RGB
    model (``channels`` 3) sees a grey image as three equal channels and gives back their
    mean; transparency is composited on black. Inputs need sides of at least
    ``window // 2 + 1`` pixels (the graph reflect-pads to a multiple of ``window``).
    ``tile`` and ``overlap`` are the exporter's recommendation for tiled inference.
    """

    scale: int
    window: int
    channels: int = 3
    tile: int = 128
    overlap: int = 16
    stretch: StretchSpec = ENHANCE_STRETCH

    def __post_init__(self) -> None:
        if self.scale < 1 or self.window < 1 or self.channels not in (1, 3):
            raise BundleError(f"enhance preprocessing needs scale >= 1, window >= 1 and 1 or 3 channels, "
                              f"not scale {self.scale}, window {self.window}, channels {self.channels}")
        if not 0 <= self.overlap < self.tile:
            raise BundleError(f"enhance preprocessing: overlap {self.overlap} must be below tile {self.tile}")
        if self.stretch.interval != "percentile":
            raise BundleError("enhance preprocessing needs a percentile interval (an invertible mapping)")

    @property
    def min_side(self) -> int:
        """Smallest image side the graph's reflect padding accepts."""
        return self.window // 2 + 1

    def to_dict(self) -> dict[str, Any]:
        """The manifest form (``preprocessing`` in manifest.json)."""
        d = asdict(self)
        d.update(color="RGB" if self.channels == 3 else "grey", layout="NCHW", dtype="float32", range=[0.0, 1.0],
                 grey="replicated to every channel; output channels averaged",
                 alpha="composite_on_black", output="clipped to [0, 1]; FITS through the inverse stretch")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnhanceSpec:
        """Read the manifest form; refuse what this runtime cannot reproduce."""
        try:
            if d.get("layout", "NCHW") != "NCHW" or d.get("dtype", "float32") != "float32":
                raise BundleError(f"preprocessing: this runtime feeds enhance models NCHW float32, not "
                                  f"{d.get('layout')} {d.get('dtype')}")
            return cls(scale=int(d["scale"]), window=int(d["window"]), channels=int(d.get("channels", 3)),
                       tile=int(d["tile"]), overlap=int(d["overlap"]),
                       stretch=StretchSpec(**d.get("stretch", asdict(ENHANCE_STRETCH))))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"preprocessing section is malformed: {exc}") from exc


class UnitMap:
    """The invertible map of scientific values to [0, 1] for one image: interval, then stretch.

    Limits come from the whole image's finite values (so every tile of it is mapped the
    same way); :meth:`inverse` turns network outputs back into the data's own units.
    """

    def __init__(self, data: np.ndarray, spec: StretchSpec = ENHANCE_STRETCH) -> None:
        finite = np.isfinite(data)
        if not finite.any():
            raise ImageDecodeError("has no finite pixel values (all NaN or infinite)")
        interval, self.curve = _astropy_parts(spec)
        if (spec.lower_percentile, spec.upper_percentile) == (0.0, 100.0):  # no copy of a large image
            self.lo = float(np.min(data, where=finite, initial=np.inf))
            self.hi = float(np.max(data, where=finite, initial=-np.inf))
        else:
            self.lo, self.hi = (float(v) for v in interval.get_limits(data[finite]))
        if not self.hi > self.lo:
            self.hi = self.lo + 1.0

    def forward(self, data: np.ndarray) -> np.ndarray:
        """Values -> [0, 1] float32; NaN and infinities become 0 (the sky floor)."""
        x = (np.asarray(data, dtype=np.float64) - self.lo) / (self.hi - self.lo)
        x = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        return self.curve(x, clip=True).astype(np.float32)

    def inverse(self, unit: np.ndarray) -> np.ndarray:
        """[0, 1] -> values in the data's units (float32), the exact inverse of :meth:`forward`."""
        x = self.curve.inverse(np.clip(unit.astype(np.float64), 0.0, 1.0), clip=True)
        return (self.lo + x * (self.hi - self.lo)).astype(np.float32)


def _astropy_parts(spec: StretchSpec) -> tuple[Any, Any]:
    """The astropy.visualization interval and stretch objects a spec names."""
    from astropy.visualization import (AsinhStretch, AsymmetricPercentileInterval, LinearStretch, LogStretch,
                                       SqrtStretch, ZScaleInterval)

    interval = ZScaleInterval() if spec.interval == "zscale" else \
        AsymmetricPercentileInterval(spec.lower_percentile, spec.upper_percentile)
    curve = {"asinh": lambda: AsinhStretch(a=1.0 / spec.softening), "linear": LinearStretch,
             "sqrt": SqrtStretch, "log": lambda: LogStretch(a=spec.softening)}[spec.kind]()
    return interval, curve


def stretch(data: np.ndarray, spec: StretchSpec = StretchSpec()) -> np.ndarray:
    """Map finite scientific values to uint8: the spec's interval, then its stretch.

    NaN and infinite pixels (blank regions of a mosaic) become black. An image with no
    finite pixel cannot be shown and raises :class:`ImageDecodeError`; a constant image
    (no interval to scale) becomes black rather than a division by zero.
    """
    data = np.asarray(data, dtype=np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        raise ImageDecodeError("has no finite pixel values (all NaN or infinite)")
    interval, curve = _astropy_parts(spec)
    lo, hi = (float(v) for v in interval.get_limits(data[finite]))
    if not hi > lo:
        hi = lo + 1.0
    x = np.clip((np.where(finite, data, lo) - lo) / (hi - lo), 0.0, 1.0)
    return np.round(curve(x, clip=True) * 255.0).astype(np.uint8)


def planes_to_rgb(data: np.ndarray, spec: StretchSpec = StretchSpec()) -> np.ndarray:
    """Turn a 2-D image or a 3-plane cube of scientific values into HxWx3 uint8.

    Leading length-1 axes are dropped. A 2-D image is grey; a (3, H, W) cube is taken as
    R, G, B planes, each stretched on its own. Anything else cannot be shown as one image.
    """
    data = np.asarray(data)
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 2:
        grey = stretch(data, spec)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if data.ndim == 3 and data.shape[0] == 3:
        return np.stack([stretch(p, spec) for p in data], axis=2)
    raise ImageDecodeError(
        f"has data of shape {tuple(data.shape)}; expected a 2-D image or a cube of 3 planes"
    )


def to_rgb(image: Image.Image, spec: StretchSpec = StretchSpec()) -> np.ndarray:
    """Any Pillow image as HxWx3 uint8, the single colour rule of FLARE."""
    mode = image.mode
    if mode in ("RGB",):
        return np.asarray(image, dtype=np.uint8)
    if mode.startswith("I;16"):
        arr = np.asarray(image).astype(np.float64)
        grey = np.round(arr / 257.0).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("I", "F"):
        return planes_to_rgb(np.asarray(image), StretchSpec(kind="linear", lower_percentile=0.0,
                                                            upper_percentile=100.0))
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        if mode == "La":  # premultiplied grey + alpha: Pillow only converts it via LA
            image = image.convert("LA")
        rgba = image.convert("RGBA")
        sky = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(sky, rgba).convert("RGB"), dtype=np.uint8)
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (ValueError, OSError) as exc:
        raise ImageDecodeError(f"has pixel mode {mode!r}, which cannot be converted to RGB") from exc


def resize(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resize HxWx3 uint8 to the network size with the spec's filter."""
    if rgb.shape[0] == spec.size and rgb.shape[1] == spec.size:
        return rgb
    img = Image.fromarray(rgb, mode="RGB")
    out = img.resize((spec.size, spec.size), _INTERPOLATION[spec.interpolation])
    return np.asarray(out, dtype=np.uint8)


def normalize(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """HxWx3 uint8 -> 3xHxW float32, scaled to [0, 1] and standardised."""
    x = rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    x -= np.asarray(spec.mean, dtype=np.float32)
    x /= np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The network input for one decoded image: resize, then normalise (unless the model does).

    CHW float32 normally; HWC uint8 for a :attr:`PreprocessSpec.fused` model.
    """
    resized = resize(rgb, spec)
    return np.ascontiguousarray(resized) if spec.fused else normalize(resized, spec)
