"""Sources in a survey frame: background and noise, detection with deblending, shapes and fluxes.

All of it is SEP (``sep``, Source Extraction and Photometry: SExtractor's algorithms as a C
library with numpy bindings); nothing here measures pixels itself. SEP was chosen over
photutils after measuring both on the same planted-source frames (docs/catalog.md): the same
completeness, centroids as good, and an order of magnitude faster, with a smaller memory
footprint because the background is subtracted in place.

Conventions, as numpy and astropy count: pixel ``(x, y)`` is column ``x``, row ``y``, and the
centre of the first pixel is ``(0, 0)``. ``a`` and ``b`` are the semi-major and semi-minor
axes (second moments, in pixels) and ``theta`` the angle of the major axis in degrees,
counter-clockwise from the +x axis, in (-90, 90]. ``flux`` is the Kron ("AUTO") flux of the
background-subtracted frame and ``flux_err`` its error from the background noise map.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import sep  # a ModuleNotFoundError here is turned into its install hint by the CLI (flare/cli.py)

from flare.runtime.foundation.errors import ImageDecodeError

#: Bytes of working memory detection needs per frame pixel: the float32 frame, its noise map,
#: SEP's filtered copy and segmentation map (measured by benchmarks/catalog_bench.py, rounded up).
BYTES_PER_PIXEL = 24


@dataclass(frozen=True)
class DetectionSettings:
    """What changes which sources are found (recorded with a catalogue, so a resume keeps them).

    ``threshold`` is in units of the local background noise, ``min_area`` in pixels; the rest
    are SExtractor's defaults: a 64 px background mesh median-filtered over 3 x 3 meshes, 32
    deblending levels with a minimum contrast of 0.005.
    """

    threshold: float = 1.5
    min_area: int = 5
    background_box: int = 64
    background_filter: int = 3
    deblend_levels: int = 32
    deblend_contrast: float = 0.005

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"the detection threshold must be a positive number of sigmas, not {self.threshold}")
        if self.min_area < 1:
            raise ValueError(f"the minimum area must be at least 1 pixel, not {self.min_area}")

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass
class Sources:
    """The sources of one frame, one array element each (see the module docstring for units)."""

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    area: np.ndarray  #: pixels above the threshold (int)
    #: Inclusive bounding boxes of the pixels above the threshold: xmin, xmax, ymin, ymax (int).
    xmin: np.ndarray
    xmax: np.ndarray
    ymin: np.ndarray
    ymax: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)  #: "background" and "detection" time

    def __len__(self) -> int:
        return len(self.x)


def detect(frame: np.ndarray, settings: DetectionSettings = DetectionSettings()) -> Sources:
    """Find the sources of a 2-D frame. ``frame`` (float32, C order) is overwritten with the
    background-subtracted frame, which keeps detection at :data:`BYTES_PER_PIXEL`; NaN pixels
    (blank regions of a mosaic) are masked."""
    if frame.ndim != 2 or frame.dtype != np.float32 or not frame.flags.c_contiguous:
        raise ValueError("detect needs a 2-D C-contiguous float32 array")
    started = time.perf_counter()
    mask = ~np.isfinite(frame)
    masked = bool(mask.any())
    if masked:
        frame[mask] = 0.0
    box, filt = settings.background_box, settings.background_filter
    try:
        background = sep.Background(frame, mask=mask if masked else None, bw=box, bh=box, fw=filt, fh=filt)
        background.subfrom(frame)
        noise = background.rms()
        del background
    except Exception as exc:  # SEP raises plain Exceptions for what it cannot model
        raise ImageDecodeError(f"has no background SEP can estimate ({exc})") from exc
    if masked:
        noise[mask] = np.inf
    measured = time.perf_counter()
    sep.set_extract_pixstack(max(300_000, frame.size // 4))
    sep.set_sub_object_limit(4096)
    try:
        found = sep.extract(frame, settings.threshold, err=noise, mask=mask if masked else None,
                            minarea=settings.min_area, deblend_nthresh=settings.deblend_levels,
                            deblend_cont=settings.deblend_contrast, filter_type="conv")
    except Exception as exc:
        raise ImageDecodeError(f"could not be searched for sources ({exc}); raise --detect-threshold") from exc
    flux, flux_err = _kron_flux(frame, noise, found, mask if masked else None)
    x, y = _windowed_centroids(frame, found, mask if masked else None)
    theta = np.degrees(found["theta"].astype(np.float64))
    theta[theta <= -90.0] += 180.0
    return Sources(
        x=x, y=y, flux=flux, flux_err=flux_err,
        a=found["a"].astype(np.float64), b=found["b"].astype(np.float64), theta=theta,
        area=found["npix"].astype(np.int64), xmin=found["xmin"].astype(np.int64),
        xmax=found["xmax"].astype(np.int64), ymin=found["ymin"].astype(np.int64),
        ymax=found["ymax"].astype(np.int64),
        seconds={"background": measured - started, "detection": time.perf_counter() - measured},
    )


def _windowed_centroids(frame: np.ndarray, found: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """SExtractor's XWIN / YWIN: centroids in a Gaussian window sized from each source's
    half-light radius, far less noisy than the isophotal barycentre for faint point sources.
    A source whose window does not converge (or wanders off its isophote) keeps the barycentre."""
    x, y = found["x"].astype(np.float64), found["y"].astype(np.float64)
    if len(found) == 0:
        return x, y
    a = np.maximum(found["a"].astype(np.float64), 1e-3)
    half, flag = sep.flux_radius(frame, x, y, 6.0 * a, 0.5, mask=mask, subpix=5)
    sigma = 2.0 / 2.35 * np.where(np.isfinite(half) & (half > 0), half, 1.0)
    xw, yw, wflag = sep.winpos(frame, x, y, sigma, mask=mask)
    good = (wflag == 0) & (flag == 0) & np.isfinite(xw) & np.isfinite(yw) & (np.hypot(xw - x, yw - y) < a)
    return np.where(good, xw, x), np.where(good, yw, y)


def _kron_flux(frame: np.ndarray, noise: np.ndarray, found: np.ndarray,
               mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """SExtractor's FLUX_AUTO: the flux in 2.5 Kron radii (at least 3.5 pixels), with its error."""
    if len(found) == 0:
        return np.zeros(0), np.zeros(0)
    x, y, a, b, theta = (found[k].astype(np.float64) for k in ("x", "y", "a", "b", "theta"))
    a, b = np.maximum(a, 1e-3), np.maximum(b, 1e-3)
    kron, _ = sep.kron_radius(frame, x, y, a, b, theta, 6.0, mask=mask)
    kron = np.where(np.isfinite(kron) & (kron > 0), kron, 1.0)
    radius = np.maximum(2.5 * kron, 3.5 / np.sqrt(a * b))
    flux, flux_err, _ = sep.sum_ellipse(frame, x, y, a, b, theta, radius, err=noise, mask=mask, subpix=1)
    return flux.astype(np.float64), flux_err.astype(np.float64)
