"""Wide-field frames with planted sources at known places: the ground truth ``flare catalog``
is measured against (tests/test_catalog.py and benchmarks/catalog_bench.py use the same frames).

A frame is a sky with a linear background gradient and Gaussian noise, point-like stars
(circular Gaussians of known flux, hence known signal-to-noise) and, optionally, extended
objects of known class cut from the synthetic sky (:func:`flare.training.data.synth.render`),
on a tangent-plane WCS whose CD matrix is rotated, so RA/Dec checks exercise the rotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Noise of one pixel (counts) and the sky level at the frame's centre.
NOISE = 5.0
SKY = 100.0
#: Gaussian PSF of the stars, in pixels.
PSF_SIGMA = 1.5
#: Pixel scale (arcsec) and rotation (degrees) of the frame's WCS.
PIXEL_ARCSEC = 0.2
ROTATION_DEG = 30.0
#: Side of the synthetic-sky stamps planted as extended objects.
STAMP = 32


@dataclass
class Planted:
    """What was put in a frame: positions (0-based pixels), fluxes and classes."""

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    snr: np.ndarray  #: the aperture signal-to-noise of each object (see :func:`point_snr`)
    kind: list[str] = field(default_factory=list)  #: "star", or the synthetic class of a stamp

    def __len__(self) -> int:
        return len(self.x)


def point_snr(flux: float | np.ndarray, noise: float = NOISE, sigma: float = PSF_SIGMA) -> np.ndarray:
    """Signal-to-noise of a Gaussian star of total ``flux`` in a matched filter (the optimal
    detection statistic): flux / (noise * sqrt(4 pi sigma^2))."""
    return np.asarray(flux) / (noise * math.sqrt(4.0 * math.pi * sigma ** 2))


def frame_wcs(side: int):  # -> astropy.wcs.WCS
    """A TAN WCS centred on the frame, rotated by :data:`ROTATION_DEG` through its CD matrix."""
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [side / 2 + 0.5, side / 2 + 0.5]
    scale = PIXEL_ARCSEC / 3600.0
    c, s = math.cos(math.radians(ROTATION_DEG)), math.sin(math.radians(ROTATION_DEG))
    wcs.wcs.cd = np.array([[-scale * c, scale * s], [scale * s, scale * c]])
    return wcs


def _place(rng: np.random.Generator, n: int, side: int, margin: int, spacing: float,
           taken: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """``n`` positions at least ``spacing`` from each other and from ``taken`` (which grows)."""
    found: list[tuple[float, float]] = []
    for _ in range(n * 200):
        if len(found) == n:
            break
        x, y = rng.uniform(margin, side - 1 - margin, size=2)
        if all((x - a) ** 2 + (y - b) ** 2 >= spacing ** 2 for a, b in taken):
            taken.append((x, y))
            found.append((x, y))
    if len(found) < n:
        raise ValueError(f"cannot place {n} objects {spacing} px apart on a {side} px frame")
    return found


def _stamp(kind: str, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A synthetic-sky image of ``kind`` as counts: grey, its own sky removed, tapered to 0 at the edge."""
    from flare.training.data.synth import render

    grey = render(kind, rng, STAMP).astype(np.float64).mean(axis=2)
    grey = np.clip(grey - np.median(grey), 0.0, None)
    r = np.hypot(*np.meshgrid(np.arange(STAMP) - (STAMP - 1) / 2, np.arange(STAMP) - (STAMP - 1) / 2))
    taper = np.clip((STAMP / 2 - r) / 4.0, 0.0, 1.0)
    stamp = grey * taper
    return stamp * (amplitude / max(stamp.max(), 1e-9))


def make_frame(side: int, stars: int, *, classes: tuple[str, ...] = (), per_class: int = 0, seed: int = 0,
               snr_range: tuple[float, float] = (12.0, 200.0)) -> tuple[np.ndarray, Planted]:
    """A ``side`` x ``side`` float32 frame and what was planted in it.

    Stars get matched-filter SNRs log-uniform over ``snr_range``; each of ``classes`` gets
    ``per_class`` stamps with a peak of 40 noise sigmas. Objects keep 12 px (stars) and a stamp's
    side (stamps) apart, so each is one source.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    frame = (SKY + 0.02 * (xx - side / 2) + 0.01 * (yy - side / 2)).astype(np.float32)
    frame += rng.normal(0.0, NOISE, size=(side, side)).astype(np.float32)
    taken: list[tuple[float, float]] = []
    xs, ys, fluxes, kinds = [], [], [], []
    for kind in classes:
        for x, y in _place(rng, per_class, side, STAMP, 1.5 * STAMP, taken):
            stamp = _stamp(kind, rng, 40.0 * NOISE)
            x0, y0 = int(round(x)) - STAMP // 2, int(round(y)) - STAMP // 2
            frame[y0:y0 + STAMP, x0:x0 + STAMP] += stamp.astype(np.float32)
            sy, sx = np.mgrid[0:STAMP, 0:STAMP]
            total = stamp.sum()
            xs.append(x0 + float((stamp * sx).sum() / total))
            ys.append(y0 + float((stamp * sy).sum() / total))
            fluxes.append(float(total))
            kinds.append(kind)
    lo, hi = snr_range
    snr_to_flux = NOISE * math.sqrt(4.0 * math.pi * PSF_SIGMA ** 2)
    half = 8
    for x, y in _place(rng, stars, side, half + 1, 12.0, taken):
        flux = math.exp(rng.uniform(math.log(lo), math.log(hi))) * snr_to_flux
        x0, y0 = int(x) - half, int(y) - half
        gy, gx = np.mgrid[y0:y0 + 2 * half + 1, x0:x0 + 2 * half + 1]
        psf = np.exp(-((gx - x) ** 2 + (gy - y) ** 2) / (2 * PSF_SIGMA ** 2)) / (2 * math.pi * PSF_SIGMA ** 2)
        frame[y0:y0 + 2 * half + 1, x0:x0 + 2 * half + 1] += (flux * psf).astype(np.float32)
        xs.append(x)
        ys.append(y)
        fluxes.append(flux)
        kinds.append("star")
    flux_arr = np.array(fluxes)
    return frame, Planted(np.array(xs), np.array(ys), flux_arr, point_snr(flux_arr), kinds)


def write_fits(path: Path, frame: np.ndarray, wcs=None) -> Path:
    """``frame`` as a FITS primary image, with ``wcs`` in its header when given."""
    from astropy.io import fits

    header = wcs.to_header() if wcs is not None else None
    fits.PrimaryHDU(frame, header=header).writeto(path, overwrite=True)
    return Path(path)
