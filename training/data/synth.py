"""Procedural sky images for the 8 FLARE classes, and the low-resolution degradation.

The demo and the tests must run without downloading SpaceNet, so this module draws a
stand-in data set: one numpy renderer per fine class, plus :func:`degrade`, the blur /
downsample / noise / JPEG chain that turns a high-resolution (HR) image into the
low-resolution (LR) input FLARE starts from. :func:`synthesize` writes matching HR/LR
folder trees that the training code reads like the real data.

Two looks (:data:`LOOKS`): ``classic``, a gentle camera that made the committed synthetic
tables, and ``photo``, which randomises the camera and darkroom and draws the objects real
deep-sky photos show, so that a model trained on it transfers better to real photographs
(``benchmarks/sim_to_real.py`` measures by how much). In both looks two properties matter
more than realism:

* **No trivial cue.** Sky level, sensor noise, colour tint, gain, field-star density and
  the final orientation are drawn from the *same* distributions for every class, and the
  object's position, scale and brightness vary widely, so a classifier has to look at
  shape and structure, not at mean brightness or colour.
* **Determinism.** Everything random comes from the ``rng`` argument, so one generator
  state always gives the same bytes, and :func:`synthesize` can resume a run.

Only numpy and pillow are used (no torch, no scipy) so the runtime-side tools can call it.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from flare.runtime.core.taxonomy import FINE_CLASSES, slug
from flare.runtime.foundation.atomic import save_png, write_json
from flare.runtime.foundation.errors import FlareError

MIN_SIZE = 32
"""Smallest renderable image: below this the objects are a handful of pixels."""

_REF = 128.0
"""Size at which pixel-valued constants (PSF widths, line widths) are tuned; they scale with size."""

_STAR_COLOURS = np.array(
    [
        [1.00, 0.62, 0.38],  # M/K: orange
        [1.00, 0.82, 0.62],  # K/G
        [1.00, 0.95, 0.88],  # G/F: yellow-white
        [0.92, 0.95, 1.00],  # A: white
        [0.72, 0.82, 1.00],  # B/O: blue-white
    ],
    dtype=np.float32,
)


#: The looks :func:`render` can give: ``classic`` is the original camera (a lifted grey sky, a
#: gentle stretch; the committed synthetic-sky tables were made with it); ``photo`` randomises
#: the camera and the darkroom the way processed astrophotographs vary (a PSF over the whole
#: scene, shot and read noise, a sky clipped to black, asinh / midtone / exponential stretches,
#: boosted colour, dense Milky Way star fields) and draws the real objects' morphologies
#: (planetary nebulae, supernova remnants, dark and reflection nebulae, rich star clusters,
#: galaxy pairs), so a model trained on it transfers to real photos.
LOOKS = ("classic", "photo")


@dataclass
class _Darkroom:
    """How one ``photo``-look image was exposed and processed, drawn for every class alike.

    Real deep-sky photos are not raw frames: the sky is clipped to (near) black, the faint
    light is stretched up hard and colour is boosted, and the optics blur everything, not
    only the stars. A model that only ever saw one gentle tone curve learns the curve.
    """

    seeing: float
    """Gaussian sigma (reference pixels) of the PSF core applied to the whole scene."""
    wing: float
    """Share of the light scattered into a wide PSF wing (halos round bright objects)."""
    wing_sigma: float
    black: float
    """The black point, as a multiple of the sky level (above 1 clips the sky to black)."""
    stretch: str
    """``asinh``, ``midtone`` or ``exp``: the tone curves astro software offers."""
    knee: float
    """Where the stretch turns: small values lift faint light hard."""
    saturation: float
    shot: float
    """Shot noise: its variance is ``shot`` times the linear signal."""
    read: float
    """Read noise, in linear units (the sky level is 0.001 to 0.03)."""


@dataclass
class _Look:
    """The class-independent "camera and sky" of one image.

    Drawn first, from one distribution for all classes, so none of these global statistics
    carries information about the class.
    """

    sky_level: float
    sky_colour: np.ndarray
    gradient: float
    gradient_angle: float
    star_density: float
    psf: float
    tint: np.ndarray
    gain: float
    gamma: float
    noise: float
    darkroom: _Darkroom | None = None
    """How the ``photo`` look develops the image; ``None`` for the ``classic`` look."""


@dataclass
class _Scene:
    """Working state shared by the renderers.

    ``sky`` holds what lies behind the object (background and field stars) so a renderer can
    occlude it (a planet hides the stars behind it) or warp it (a black hole lenses it);
    ``light`` holds the object's own emission or reflected light, added on top.
    """

    rng: np.random.Generator
    size: int
    x: np.ndarray
    y: np.ndarray
    sky: np.ndarray
    light: np.ndarray
    look: _Look

    @property
    def unit(self) -> float:
        """Pixels per reference pixel, so small features keep their look at any size."""
        return self.size / _REF

    def place(self, spread: float) -> tuple[float, float]:
        """A random object centre within ``spread`` * size of the middle of the frame."""
        half = self.size / 2.0
        dx, dy = self.rng.uniform(-spread, spread, 2) * self.size
        return half + float(dx), half + float(dy)

    def frame(self, cx: float, cy: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates relative to (cx, cy), rotated by ``angle`` radians."""
        dx, dy = self.x - cx, self.y - cy
        c, s = math.cos(angle), math.sin(angle)
        return dx * c + dy * s, -dx * s + dy * c


# --------------------------------------------------------------------------------------
# Shared building blocks
# --------------------------------------------------------------------------------------


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A scale-like quantity (brightness, density) spread evenly over orders of magnitude."""
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _fractal(rng: np.random.Generator, size: int, base: int, octaves: int, persistence: float) -> np.ndarray:
    """Multi-octave value noise in [0, 1]: upsampled random grids, finer ones weaker.

    Bicubic upsampling of a coarse random grid gives smooth blobs; summing octaves whose
    grid doubles and amplitude shrinks gives the self-similar texture of clouds and rock.
    """
    total = np.zeros((size, size), np.float32)
    amp = 1.0
    for octave in range(octaves):
        cells = min(base * 2**octave, size)
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        up = Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC)
        total += amp * np.asarray(up, np.float32)
        amp *= persistence
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / max(hi - lo, 1e-6)


def _smoothstep(edge0: float, edge1: float, v: np.ndarray) -> np.ndarray:
    """A soft 0->1 ramp, used for anti-aliased edges and fades."""
    t = np.clip((v - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _star_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """Star colours along a rough temperature sequence, from orange to blue-white."""
    t = rng.uniform(0.0, len(_STAR_COLOURS) - 1.0, n).astype(np.float32)
    i = np.minimum(t.astype(np.int64), len(_STAR_COLOURS) - 2)
    f = (t - i)[:, None]
    return _STAR_COLOURS[i] * (1.0 - f) + _STAR_COLOURS[i + 1] * f


def _splat(img: np.ndarray, x: np.ndarray, y: np.ndarray, rgb: np.ndarray, sigma: float) -> None:
    """Add Gaussian point sources (peak value ``rgb`` per star) to ``img`` in place.

    Each star is a small stamp evaluated at its sub-pixel position; all stamps are summed
    with one ``bincount`` per channel, so thousands of stars cost a few array operations.
    """
    if len(x) == 0:
        return
    h, w = img.shape[:2]
    rad = max(1, int(math.ceil(3.0 * sigma)))
    off = np.arange(-rad, rad + 1, dtype=np.float32)
    ix, iy = np.floor(x + 0.5), np.floor(y + 0.5)
    wx = np.exp(-((off[None, :] + ix[:, None] - x[:, None]) ** 2) / (2.0 * sigma * sigma))
    wy = np.exp(-((off[None, :] + iy[:, None] - y[:, None]) ** 2) / (2.0 * sigma * sigma))
    gx = (ix[:, None] + off[None, :]).astype(np.int64)
    gy = (iy[:, None] + off[None, :]).astype(np.int64)
    weight = wy[:, :, None] * wx[:, None, :]
    inside = ((gy >= 0) & (gy < h))[:, :, None] & ((gx >= 0) & (gx < w))[:, None, :]
    flat = (gy[:, :, None] * w + gx[:, None, :])[inside]
    for c in range(3):
        vals = (weight * rgb[:, c, None, None])[inside]
        img[..., c] += np.bincount(flat, weights=vals, minlength=h * w).reshape(h, w).astype(np.float32)


def _stars(sc: _Scene, n: int, peak_lo: float, peak_hi: float, region: np.ndarray | None = None) -> None:
    """Scatter ``n`` stars into the sky with a power-law brightness: many faint, few bright.

    ``region`` (an HxW weight map) concentrates them, e.g. inside a nebula; the brightest
    get a faint wide halo, which is what makes bright stars look bigger in real images.
    """
    rng, s = sc.rng, sc.size
    if region is None:
        x = rng.uniform(-0.5, s - 0.5, n).astype(np.float32)
        y = rng.uniform(-0.5, s - 0.5, n).astype(np.float32)
    else:
        p = region.ravel().astype(np.float64)
        idx = rng.choice(p.size, size=n, p=p / p.sum())
        y = (idx // s + rng.uniform(-0.5, 0.5, n)).astype(np.float32)
        x = (idx % s + rng.uniform(-0.5, 0.5, n)).astype(np.float32)
    peak = np.minimum(peak_lo * (1.0 - rng.random(n)) ** (-1.0 / 1.5), peak_hi).astype(np.float32)
    rgb = peak[:, None] * _star_colours(rng, n)
    _splat(sc.sky, x, y, rgb, sc.look.psf)
    bright = peak > 0.6
    _splat(sc.sky, x[bright], y[bright], 0.03 * rgb[bright], sc.look.psf * 3.5)


def _sample(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup of ``img`` at float coordinates, wrapping at the borders."""
    h, w = img.shape[:2]
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0i, y0i = x0.astype(np.int64) % w, y0.astype(np.int64) % h
    x1i, y1i = (x0i + 1) % w, (y0i + 1) % h
    top = img[y0i, x0i] * (1 - fx) + img[y0i, x1i] * fx
    bottom = img[y1i, x0i] * (1 - fx) + img[y1i, x1i] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an HxWxC float image via FFT (edge-padded, so no wrap-around)."""
    if sigma <= 0.05:
        return img
    pad = int(math.ceil(3.0 * sigma))
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = padded.shape[:2]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    kernel = np.exp(-2.0 * (math.pi * sigma) ** 2 * (fx * fx + fy * fy))[..., None]
    out = np.fft.irfft2(np.fft.rfft2(padded, axes=(0, 1)) * kernel, s=(h, w), axes=(0, 1))
    return out[pad:-pad, pad:-pad].astype(np.float32)


# --------------------------------------------------------------------------------------
# Shared sky, camera and finishing
# --------------------------------------------------------------------------------------


def _draw_look(rng: np.random.Generator) -> _Look:
    """Draw the class-independent sky and camera settings (same distribution for all classes)."""
    sky_colour = np.array([0.85, 0.92, 1.1], np.float32) * np.exp(rng.normal(0.0, 0.15, 3)).astype(np.float32)
    tint = np.exp(rng.normal(0.0, 0.12, 3)).astype(np.float32)
    return _Look(
        sky_level=_loguniform(rng, 0.001, 0.03),
        sky_colour=sky_colour,
        gradient=float(rng.uniform(0.0, 0.8)),
        gradient_angle=float(rng.uniform(0.0, 2 * math.pi)),
        star_density=_loguniform(rng, 15.0, 400.0),
        psf=float(rng.uniform(0.5, 1.0)),
        tint=tint / tint.mean(),
        gain=_loguniform(rng, 0.5, 1.6),
        gamma=float(rng.uniform(1.8, 2.6)),
        noise=float(rng.uniform(0.3, 5.0)),
    )


def _new_scene(rng: np.random.Generator, size: int, look_name: str = "classic") -> _Scene:
    """A dark, slightly graded sky with random field stars: the common backdrop of every class.

    The ``photo`` look draws its darkroom after the classic settings (so ``classic`` images
    stay byte-identical) and puts a third of its images in a dense Milky Way field.
    """
    look = _draw_look(rng)
    if look_name == "photo":
        look.darkroom = _draw_darkroom(rng)
        if rng.random() < 0.35:
            look.star_density = _loguniform(rng, 300.0, 2500.0)
    look.psf *= size / _REF
    coords = np.arange(size, dtype=np.float32)
    x, y = np.meshgrid(coords, coords)
    ramp = (x * math.cos(look.gradient_angle) + y * math.sin(look.gradient_angle)) / size
    level = look.sky_level * (1.0 + look.gradient * (ramp - float(ramp.mean())))
    sky = level[..., None] * look.sky_colour
    sc = _Scene(rng, size, x, y, sky.astype(np.float32), np.zeros_like(sky, dtype=np.float32), look)
    _stars(sc, int(rng.poisson(look.star_density * sc.unit**2)), 0.04, 2.5)
    return sc


def _draw_darkroom(rng: np.random.Generator) -> _Darkroom:
    """Draw the ``photo`` look's optics and processing (same distribution for every class)."""
    return _Darkroom(
        seeing=float(rng.uniform(0.0, 0.9)),
        wing=float(rng.uniform(0.0, 0.15)),
        wing_sigma=float(rng.uniform(3.0, 10.0)),
        black=float(rng.uniform(0.5, 1.6)),
        stretch=("asinh", "midtone", "exp")[int(rng.integers(3))],
        knee=_loguniform(rng, 0.02, 0.3),
        saturation=float(rng.uniform(0.9, 2.0)),
        shot=_loguniform(rng, 3e-5, 1e-3),
        read=_loguniform(rng, 3e-4, 4e-3),
    )


def _tone(x: np.ndarray, darkroom: _Darkroom, gamma: float) -> np.ndarray:
    """Stretch linear light (0 = black point) to display values in [0, 1]."""
    k = darkroom.knee
    if darkroom.stretch == "asinh":
        return np.arcsinh(x / k) / math.asinh(1.0 / k)
    if darkroom.stretch == "midtone":  # the midtones transfer function of astro processing software
        xc = np.clip(x, 0.0, 1.0)
        m = min(k, 0.45)
        return (m - 1.0) * xc / ((2.0 * m - 1.0) * xc - m)
    return (1.0 - np.exp(-x)) ** (1.0 / gamma)


def _develop(sc: _Scene) -> np.ndarray:
    """The ``photo`` look's finish: blur by the PSF, add shot and read noise, set the black
    point, stretch, boost colour, quantise and randomly orient."""
    rng, look = sc.rng, sc.look
    dr = look.darkroom
    assert dr is not None
    linear = np.maximum(sc.sky + sc.light, 0.0) * (look.tint * look.gain)
    core = _blur(linear, dr.seeing * sc.unit)
    linear = np.maximum((1.0 - dr.wing) * core + dr.wing * _blur(linear, dr.wing_sigma * sc.unit), 0.0)
    sigma = np.sqrt(dr.shot * linear + dr.read**2)
    linear = linear + rng.standard_normal(linear.shape, dtype=np.float32) * sigma
    sky = look.sky_level * look.sky_colour * look.tint * look.gain  # per channel: processing neutralises it
    display = _tone(np.maximum(linear - dr.black * sky, 0.0), dr, look.gamma)
    grey = display.mean(axis=2, keepdims=True)
    display = grey + dr.saturation * (display - grey)
    img = np.clip(np.rint(display * 255.0), 0, 255).astype(np.uint8)
    img = np.rot90(img, int(rng.integers(4)))
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def _finish(sc: _Scene) -> np.ndarray:
    """Expose, tone-map, add sensor noise, quantise and randomly orient the scene."""
    rng, look = sc.rng, sc.look
    linear = np.maximum(sc.sky + sc.light, 0.0) * (look.tint * look.gain)
    display = (1.0 - np.exp(-linear)) ** (1.0 / look.gamma)
    noisy = display * 255.0 + rng.normal(0.0, look.noise, display.shape).astype(np.float32)
    img = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    img = np.rot90(img, int(rng.integers(4)))
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


# --------------------------------------------------------------------------------------
# Class renderers
# --------------------------------------------------------------------------------------


_PLANET_STYLES = {
    # style: (colour A, colour B, limb darkening, banded?)
    "gas": ([0.92, 0.78, 0.58], [0.62, 0.40, 0.26], 0.55, True),
    "ice": ([0.70, 0.88, 0.95], [0.42, 0.62, 0.85], 0.45, True),
    "rocky": ([0.80, 0.50, 0.32], [0.45, 0.30, 0.24], 0.25, False),
    "terran": ([0.20, 0.38, 0.75], [0.35, 0.48, 0.25], 0.3, False),
}


def _planet(sc: _Scene) -> None:
    """A lit sphere: banded or mottled surface mapped on latitude/longitude, limb darkening,
    a terminator from an oblique light, sometimes rings (which hide and are hidden by the disc)."""
    rng, s = sc.rng, sc.size
    style = ("gas", "ice", "rocky", "terran")[int(rng.integers(4))]
    col_a, col_b, limb, banded = _PLANET_STYLES[style]
    ringed = rng.random() < (0.45 if style in ("gas", "ice") else 0.1)
    radius = s * (rng.uniform(0.1, 0.24) if ringed else rng.uniform(0.12, 0.42))
    cx, cy = sc.place(0.18)
    u, v = sc.frame(cx, cy, float(rng.uniform(-0.7, 0.7)))
    px, py = u / radius, v / radius
    rho2 = px * px + py * py
    pz = np.sqrt(np.clip(1.0 - rho2, 0.0, 1.0))
    alpha = np.clip((1.0 - np.sqrt(rho2)) * radius + 0.5, 0.0, 1.0)

    # Spin axis tilted towards the viewer by b0: latitude and longitude of each visible point.
    b0 = float(rng.uniform(0.15, 0.5) * rng.choice([-1.0, 1.0]))
    sin_lat = np.clip(py * math.cos(b0) + pz * math.sin(b0), -1.0, 1.0)
    lon = np.arctan2(px, -py * math.sin(b0) + pz * math.cos(b0))
    tex = _fractal(rng, s, 3, 5, 0.55)[..., None]
    ti = (lon / math.pi + 1.0) * 0.5 * (s - 1)
    tj = (sin_lat + 1.0) * 0.5 * (s - 1)
    surface_noise = _sample(tex, ti, tj)[..., 0]
    a, b = np.array(col_a, np.float32), np.array(col_b, np.float32)
    if banded:
        knots = rng.random(int(rng.integers(8, 22))).astype(np.float32)
        lat = sin_lat + 0.08 * (surface_noise - 0.5)
        band = np.interp(lat, np.linspace(-1, 1, len(knots)), knots).astype(np.float32)
        contrast = float(rng.uniform(1.0, 2.0)) if style == "gas" else float(rng.uniform(0.3, 1.0))
        mix = np.clip(0.5 + contrast * (band - 0.5), 0.0, 1.0)
        albedo = a * (1 - mix[..., None]) + b * mix[..., None]
    elif style == "terran":
        land = _smoothstep(0.5, 0.56, surface_noise)[..., None]
        clouds = _smoothstep(0.45, 0.8, _sample(_fractal(rng, s, 4, 5, 0.6)[..., None], ti, tj))
        albedo = (a * (1 - land) + b * land) * (1 - clouds) + 0.95 * clouds
    else:
        albedo = a * (1 - surface_noise[..., None]) + b * surface_noise[..., None]
    albedo = albedo * np.exp(rng.normal(0.0, 0.1, 3)).astype(np.float32)

    phase = float(rng.uniform(0.0, 2.0))
    light_az = float(rng.uniform(0.0, 2 * math.pi))
    lx, ly, lz = math.sin(phase) * math.cos(light_az), math.sin(phase) * math.sin(light_az), math.cos(phase)
    lit = _smoothstep(-0.05, 0.35, px * lx + py * ly + pz * lz)
    shade = lit * (1.0 - limb * (1.0 - pz)) + 0.015
    brightness = float(rng.uniform(0.5, 1.4))
    disc = albedo * (shade * brightness)[..., None]
    if style in ("ice", "terran"):
        rim = np.exp(-(1.0 - np.sqrt(np.minimum(rho2, 1.0))) * radius / max(1.5 * sc.unit, 0.8))
        disc = disc + (0.25 * brightness * rim * lit)[..., None] * np.array([0.5, 0.75, 1.0], np.float32)

    cover = alpha
    body = disc * alpha[..., None]
    if ringed:
        # Ring plane is perpendicular to the spin axis: intersect each line of sight with it.
        tan_b0 = math.tan(b0)
        ring_r = np.sqrt(px * px + (py / math.sin(b0)) ** 2)
        ring_z = -py / tan_b0
        inner, outer = float(rng.uniform(1.25, 1.5)), float(rng.uniform(1.9, 2.4))
        knots = rng.uniform(0.2, 1.0, int(rng.integers(6, 16))).astype(np.float32)
        profile = np.interp(ring_r, np.linspace(inner, outer, len(knots)), knots).astype(np.float32)
        edges = _smoothstep(inner, inner + 0.04, ring_r) * (1 - _smoothstep(outer - 0.04, outer, ring_r))
        ring_a = profile * edges
        ring_a = ring_a * float(rng.uniform(0.6, 0.95))
        hidden = (ring_z < pz) & (rho2 < 1.0)
        ring_a = np.where(hidden, 0.0, ring_a).astype(np.float32)
        ring_col = a * 0.8 * brightness * (0.35 + 0.65 * abs(lz))
        body = body * (1 - ring_a[..., None]) + ring_a[..., None] * ring_col
        cover = 1.0 - (1.0 - alpha) * (1.0 - ring_a)
    sc.sky *= (1.0 - cover)[..., None]
    sc.light += body


def _galaxy(sc: _Scene) -> None:
    """A disc galaxy, or (:data:`ELLIPTICAL_SHARE` of the time) an elliptical."""
    if sc.rng.random() < ELLIPTICAL_SHARE:
        _elliptical(sc)
    else:
        _disc_galaxy(sc)


def _elliptical(sc: _Scene) -> None:
    """An elliptical galaxy: a smooth, yellowish de Vaucouleurs-like (Sersic n 3 to 5) glow,
    flattened and turned at random, with a bright centre and no arms or dust."""
    rng, s = sc.rng, sc.size
    cx, cy = sc.place(0.15)
    u, v = sc.frame(cx, cy, float(rng.uniform(0.0, math.pi)))
    q = float(rng.uniform(0.4, 1.0))
    n = float(rng.uniform(3.0, 5.0))
    re = s * float(rng.uniform(0.04, 0.15))
    r = np.sqrt(u * u + (v / q) ** 2) + 1e-3
    glow = np.exp(-(2.0 * n - 1.0 / 3.0) * ((r / re) ** (1.0 / n) - 1.0))
    colour = np.array([1.0, 0.88, 0.68], np.float32) * np.exp(rng.normal(0.0, 0.05, 3)).astype(np.float32)
    sc.light += np.minimum(glow * float(rng.uniform(0.15, 0.5)), 20.0)[..., None] * colour


def _disc_galaxy(sc: _Scene) -> None:
    """A disc galaxy: Sersic bulge, exponential disc wound into logarithmic spiral arms with
    clumpy star formation, dust lanes, seen at a random inclination and position angle."""
    rng, s = sc.rng, sc.size
    cx, cy = sc.place(0.15)
    h = s * rng.uniform(0.05, 0.16)
    q = float(rng.uniform(0.2, 1.0)) if rng.random() < 0.8 else float(rng.uniform(0.12, 0.3))
    u, v = sc.frame(cx, cy, float(rng.uniform(0.0, math.pi)))
    vd = v / q
    r = np.sqrt(u * u + vd * vd) + 1e-3
    theta = np.arctan2(vd, u)

    n = float(rng.uniform(1.0, 4.0))
    b_n = 2.0 * n - 1.0 / 3.0
    re = h * float(rng.uniform(0.3, 0.8))
    qb = max(q, float(rng.uniform(0.55, 0.9)))
    rb = np.sqrt(u * u + (v / qb) ** 2) + 1e-3
    bulge = np.exp(-b_n * (rb / re) ** (1.0 / n))

    arms_n = int(rng.integers(2, 5))
    pitch = math.radians(float(rng.uniform(10.0, 35.0)))
    phase = theta - np.log(r / h) / math.tan(pitch) * float(rng.choice([-1.0, 1.0]))
    wave = 0.5 + 0.5 * np.cos(arms_n * phase - float(rng.uniform(0, 2 * math.pi)))
    arms = wave ** float(rng.uniform(1.5, 4.0))
    clumps = _fractal(rng, s, 6, 4, 0.6)
    strength = float(rng.uniform(0.6, 1.0))
    disc = np.exp(-r / h) * (1.0 - np.exp(-((r / (0.6 * h)) ** 2)))
    spiral = disc * ((1.0 - strength) + strength * 2.0 * arms * (0.3 + 1.4 * clumps * clumps))
    knots = disc * arms * np.maximum(clumps - 0.6, 0.0) * 4.0

    dust = np.ones_like(r)
    if rng.random() < 0.7:
        lane = (0.5 + 0.5 * np.cos(arms_n * phase - 0.6)) ** 8
        dust = dust - float(rng.uniform(0.3, 0.8)) * lane * (r < 3.5 * h)
    if q < 0.4:
        width = max(0.3 * q * h, 0.8 * sc.unit)
        offset = float(rng.uniform(-0.5, 0.5)) * width
        lane = np.exp(-(((v - offset) / width) ** 2) - (u / (2.5 * h)) ** 2)
        dust = dust - float(rng.uniform(0.5, 0.9)) * lane
    dust = np.clip(dust, 0.05, 1.0)

    bulge_col = np.array([1.0, 0.85, 0.6], np.float32)
    disc_col = np.array([0.8, 0.88, 1.0], np.float32)
    blue_knots = rng.random() < 0.6
    knot_col = np.array([0.55, 0.7, 1.0] if blue_knots else [1.0, 0.5, 0.7], np.float32)
    b_ratio = float(rng.uniform(0.4, 2.0))
    light = (b_ratio * bulge)[..., None] * bulge_col + (spiral * dust)[..., None] * disc_col
    light = light + (0.6 * knots * dust)[..., None] * knot_col
    sc.light += light * float(rng.uniform(0.35, 1.3))


def _asteroid(sc: _Scene) -> None:
    """An irregular rocky body: Fourier-perturbed outline, lumpy cratered height field,
    shaded by one low, side-on light so relief and the dark side show."""
    rng, s = sc.rng, sc.size
    r0 = s * rng.uniform(0.12, 0.36)
    cx, cy = sc.place(0.15)
    u, v = sc.frame(cx, cy, float(rng.uniform(0.0, math.pi)))
    u = u / float(rng.uniform(1.0, 1.8))
    r = np.sqrt(u * u + v * v) + 1e-3
    theta = np.arctan2(v, u)
    outline = np.ones_like(r)
    for k in range(2, 8):
        amp, phase = float(rng.normal(0.0, 0.22 / k**1.1)), float(rng.uniform(0, 2 * math.pi))
        outline = outline + amp * np.cos(k * theta + phase)
    outline = np.clip(outline, 0.5, 1.6) * r0
    rho = r / outline
    alpha = np.clip((1.0 - rho) * r0 + 0.5, 0.0, 1.0)

    height = np.sqrt(np.clip(1.0 - rho * rho, 0.0, 1.0)) * r0 * float(rng.uniform(0.6, 1.0))
    lumps = _fractal(rng, s, 4, 5, 0.6)
    height = height + (lumps - 0.5) * r0 * 0.35
    count = int(rng.integers(3, 16))
    cr = (r0 * np.exp(rng.uniform(math.log(0.06), math.log(0.32), count))).astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi, count)
    dist = np.sqrt(rng.random(count)) * 0.8 * r0
    ccx = (cx + dist * np.cos(ang)).astype(np.float32)[:, None, None]
    ccy = (cy + dist * np.sin(ang)).astype(np.float32)[:, None, None]
    d = np.sqrt((sc.x - ccx) ** 2 + (sc.y - ccy) ** 2) / cr[:, None, None]
    bowl = np.where(d < 1.0, d * d - 1.0, 0.0) + 0.25 * np.exp(-(((d - 1.0) / 0.22) ** 2))
    height = height + (bowl * (0.35 * cr[:, None, None])).sum(axis=0)

    gy, gx = np.gradient(height)
    norm = np.sqrt(gx * gx + gy * gy + 1.0)
    inc = float(rng.uniform(0.9, 1.35))
    az = float(rng.uniform(0, 2 * math.pi))
    lx, ly, lz = math.sin(inc) * math.cos(az), math.sin(inc) * math.sin(az), math.cos(inc)
    shade = np.clip((-gx * lx - gy * ly + lz) / norm, 0.0, 1.0) ** 0.9
    base = np.array([[0.55, 0.53, 0.5], [0.6, 0.5, 0.4], [0.45, 0.43, 0.42], [0.62, 0.58, 0.5]], np.float32)[
        int(rng.integers(4))
    ]
    mottle = _fractal(rng, s, 8, 3, 0.5)
    albedo = base[None, None, :] * (0.7 + 0.6 * mottle)[..., None]
    brightness = float(rng.uniform(0.3, 1.1))
    sc.sky *= (1.0 - alpha)[..., None]
    sc.light += albedo * (alpha * (shade * brightness + 0.01))[..., None]


_NEBULA_COLOURS = np.array(
    [
        [1.0, 0.25, 0.32],  # H-alpha red
        [0.2, 0.85, 0.8],  # O III teal
        [0.35, 0.5, 1.0],  # reflection blue
        [1.0, 0.62, 0.22],  # S II orange
        [0.85, 0.3, 0.85],  # magenta
    ],
    np.float32,
)


def _nebula(sc: _Scene) -> None:
    """A diffuse emission cloud: fractal density in a random envelope, ridged-noise
    filaments, two or three emission colours mixed by noise, dark dust and young stars."""
    rng, s = sc.rng, sc.size
    envelope = np.zeros((s, s), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = sc.place(0.3)
        sx, sy = s * rng.uniform(0.15, 0.5, 2)
        u, v = sc.frame(cx, cy, float(rng.uniform(0, math.pi)))
        envelope = envelope + np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    envelope = np.minimum(envelope, 1.0)

    base, persistence = int(rng.integers(2, 5)), float(rng.uniform(0.5, 0.65))
    pick = rng.permutation(len(_NEBULA_COLOURS))
    glow = np.zeros((s, s, 3), np.float32)
    for layer in range(int(rng.integers(2, 4))):
        field = _fractal(rng, s, base, 5, persistence)
        field = np.clip(field - float(rng.uniform(0.25, 0.5)), 0.0, None) ** float(rng.uniform(1.0, 1.8))
        weight = float(rng.uniform(0.4, 1.0))
        glow += (field / max(float(field.max()), 1e-6) * weight)[..., None] * _NEBULA_COLOURS[pick[layer]]
    ridge = 1.0 - np.abs(2.0 * _fractal(rng, s, int(rng.integers(2, 5)), 4, 0.5) - 1.0)
    glow *= (1.0 + ridge ** float(rng.uniform(4.0, 10.0)) * float(rng.uniform(0.5, 2.0)))[..., None]
    dust = 1.0 - float(rng.uniform(0.0, 0.9)) * _smoothstep(0.55, 0.8, _fractal(rng, s, 4, 4, 0.55))
    sc.sky *= (0.3 + 0.7 * dust)[..., None]
    sc.light += glow * (envelope * dust * float(rng.uniform(0.15, 0.7)))[..., None]
    _stars(sc, int(rng.integers(5, 40) * sc.unit**2), 0.15, 4.0, region=envelope + 0.05)


def _comet(sc: _Scene) -> None:
    """A comet: bright nucleus in a coma, a broad curved yellowish dust tail and a narrow
    straight bluish ion tail with streamers, both pointing away from an unseen sun."""
    rng, s = sc.rng, sc.size
    cx, cy = sc.place(0.3)
    angle = float(rng.uniform(0, 2 * math.pi))
    t, n = sc.frame(cx, cy, angle)
    r = np.sqrt(t * t + n * n)
    coma_r = s * float(rng.uniform(0.012, 0.04))
    start = _smoothstep(-coma_r, 2.0 * coma_r, t)
    tp = np.maximum(t, 0.0)

    ion_len = s * float(rng.uniform(0.5, 1.5))
    ion_w = coma_r * 0.6 + 0.05 * tp
    streamers = rng.uniform(0.3, 1.0, 40)
    rays = np.interp(n / (tp + 3.0 * coma_r), np.linspace(-1, 1, 40), streamers).astype(np.float32)
    ion = np.exp(-tp / ion_len) * np.exp(-0.5 * (n / ion_w) ** 2) * (0.4 + 0.6 * rays) * start

    curve = float(rng.uniform(0.2, 1.5) * rng.choice([-1.0, 1.0])) / s
    tilt = float(rng.uniform(0.05, 0.3)) * math.copysign(1.0, curve)
    nd = n - tilt * tp - curve * tp * tp
    dust_len = s * float(rng.uniform(0.3, 1.0))
    dust_w = coma_r + float(rng.uniform(0.08, 0.2)) * tp
    dust = np.exp(-tp / dust_len) * np.exp(-0.5 * (nd / dust_w) ** 2) * start

    coma = np.exp(-r / coma_r) + 0.3 * np.exp(-r / (3.0 * coma_r))
    nucleus = np.exp(-0.5 * (r / max(0.8 * sc.unit, 0.6)) ** 2)
    ion_amp, dust_amp = float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.9))
    light = (
        (ion_amp * ion)[..., None] * np.array([0.45, 0.7, 1.0], np.float32)
        + (dust_amp * dust)[..., None] * np.array([1.0, 0.9, 0.72], np.float32)
        + coma[..., None] * np.array([0.75, 1.0, 0.85], np.float32) * float(rng.uniform(0.6, 1.5))
        + (2.0 * nucleus)[..., None]
    )
    sc.light += light * float(rng.uniform(0.5, 1.3))


def _black_hole(sc: _Scene) -> None:
    """A black hole: lensed background, dark shadow, Doppler-beamed accretion disc whose far
    side is bent into an arc around the shadow, and a thin photon ring at its edge."""
    rng, s = sc.rng, sc.size
    shadow = s * float(rng.uniform(0.07, 0.2))
    cx, cy = sc.place(0.12)
    u, v = sc.frame(cx, cy, float(rng.uniform(0, 2 * math.pi)))
    r = np.sqrt(u * u + v * v) + 1e-3

    # Point-lens mapping: each pixel sees the source at theta - thetaE^2 / theta.
    einstein = shadow * float(rng.uniform(0.7, 1.1))
    pull = 1.0 - (einstein / r) ** 2
    dx, dy = sc.x - cx, sc.y - cy
    sc.sky = _sample(sc.sky, cx + dx * pull, cy + dy * pull)
    hole = _smoothstep(shadow - 0.8 * sc.unit, shadow + 0.8 * sc.unit, r)
    sc.sky *= hole[..., None]

    incl = float(rng.uniform(0.0, 1.45))
    cos_i = max(math.cos(incl), 0.08)
    beam = float(rng.uniform(0.4, 0.8)) * max(math.sin(incl), 0.4) * float(rng.choice([-1.0, 1.0]))
    yd = v / cos_i
    rd = np.sqrt(u * u + yd * yd) + 1e-3
    r_in, r_out = shadow * float(rng.uniform(1.1, 1.4)), shadow * float(rng.uniform(1.8, 3.2))
    disc = (r_in / rd) ** float(rng.uniform(2.0, 3.5)) * _smoothstep(r_in * 0.9, r_in * 1.1, rd)
    disc = disc * (1.0 - _smoothstep(r_out * 0.7, r_out, rd))
    turb = _fractal(rng, s, 6, 3, 0.5)
    disc = disc * (0.75 + 0.5 * turb) * np.clip(1.0 + beam * u / rd, 0.05, None) ** 3
    front = v > 0
    disc = np.where(front | (r > shadow), disc, 0.0)

    phi_sin = -v / r
    arc_w = shadow * float(rng.uniform(0.12, 0.35))
    arc = np.exp(-0.5 * ((r - shadow * 1.12) / arc_w) ** 2)
    arc = arc * (0.35 + 0.65 * ((1.0 + phi_sin) * 0.5) ** (3.0 * math.sin(incl)))
    arc = arc * np.clip(1.0 + beam * u / r, 0.05, None) ** 3
    ring_w = max(0.5 * sc.unit, 0.45)
    photon = np.exp(-0.5 * ((r - shadow) / ring_w) ** 2) * np.clip(1.0 + 0.7 * beam * u / r, 0.05, None) ** 2

    hot = np.array([1.0, 0.92, 0.75], np.float32)
    warm = np.array([1.0, 0.55, 0.2], np.float32)
    heat = np.clip(r_in / rd, 0.0, 1.0)[..., None]
    disc_rgb = disc[..., None] * (warm * (1 - heat) + hot * heat)
    light = disc_rgb + (arc * float(rng.uniform(0.5, 1.2)))[..., None] * warm + photon[..., None] * hot
    if rng.random() < 0.4:
        light = _blur(light, shadow * float(rng.uniform(0.05, 0.25)))
    sc.light += light * float(rng.uniform(0.4, 1.3))


#: How often a "star" image is a star cluster and a "galaxy" an elliptical: real photos of the
#: class (Stellarium's star class is its open and globular clusters; many of its galaxies are
#: ellipticals and lenticulars) look like that, and a model trained only on single stars and
#: spirals takes them for something else.
CLUSTER_SHARE = 0.5
ELLIPTICAL_SHARE = 0.35


def _star(sc: _Scene) -> None:
    """One dominant star, or (:data:`CLUSTER_SHARE` of the time) a star cluster."""
    if sc.rng.random() < CLUSTER_SHARE:
        _cluster(sc)
    else:
        _single_star(sc)


def _cluster(sc: _Scene) -> None:
    """A star cluster: a globular one (hundreds of stars in a King-like concentration that merges
    into a glowing core) or an open one (a few dozen bright stars loosely grouped)."""
    rng, s = sc.rng, sc.size
    cx, cy = sc.place(0.15)
    globular = rng.random() < 0.5
    core = s * float(rng.uniform(0.03, 0.08) if globular else rng.uniform(0.08, 0.2))
    n = int(rng.integers(300, 1500) if globular else rng.integers(25, 90))
    r = core * np.sqrt((1.0 - rng.random(n)) ** (-2.0 / 3.0) - 1.0)  # a Plummer profile's radii
    a = rng.uniform(0.0, 2 * math.pi, n)
    keep = r < 0.6 * s
    x = (cx + r * np.cos(a))[keep].astype(np.float32)
    y = (cy + r * np.sin(a))[keep].astype(np.float32)
    peak_lo = 0.05 if globular else 0.3
    peak = np.minimum(peak_lo * (1.0 - rng.random(len(x))) ** (-1.0 / 1.5), 4.0).astype(np.float32)
    rgb = peak[:, None] * _star_colours(rng, len(x))
    _splat(sc.light, x, y, rgb, sc.look.psf)
    if globular:  # the unresolved stars of the core
        rr = (sc.x - cx) ** 2 + (sc.y - cy) ** 2
        glow = float(rng.uniform(0.2, 0.8)) * (1.0 + rr / core**2) ** -2.0
        sc.light += glow[..., None] * np.array([1.0, 0.9, 0.7], np.float32)


def _single_star(sc: _Scene) -> None:
    """One dominant star: saturated Moffat core, wide halo and 4 or 6 diffraction spikes."""
    rng, s = sc.rng, sc.size
    cx, cy = sc.place(0.25)
    u, v = sc.frame(cx, cy, float(rng.uniform(0, math.pi)))
    r2 = u * u + v * v
    core_a = s * float(rng.uniform(0.008, 0.03))
    beta = float(rng.uniform(1.8, 3.5))
    core = (1.0 + r2 / core_a**2) ** -beta
    halo = (1.0 + r2 / (core_a * float(rng.uniform(4.0, 10.0))) ** 2) ** -1.5
    spikes = np.zeros_like(r2)
    arms = 2 if rng.random() < 0.6 else 3
    width = max(0.6 * sc.unit, 0.5) * float(rng.uniform(0.8, 1.5))
    reach = s * float(rng.uniform(0.04, 0.15))
    for k in range(arms):
        a = k * math.pi / arms
        along = u * math.cos(a) + v * math.sin(a)
        across = -u * math.sin(a) + v * math.cos(a)
        spikes = spikes + np.exp(-0.5 * (across / width) ** 2) * np.exp(-np.abs(along) / reach)
    colour = _star_colours(rng, 1)[0]
    peak = float(rng.uniform(2.0, 12.0))
    light = (peak * core + float(rng.uniform(0.05, 0.25)) * halo + float(rng.uniform(0.3, 1.0)) * spikes)
    sc.light += light[..., None] * colour


def _constellation(sc: _Scene) -> None:
    """A star chart: a denser star field, 4-9 bright stars joined by thin lines (a minimum
    spanning tree, sometimes closed into a loop), drawn anti-aliased with small gaps at stars."""
    rng, s = sc.rng, sc.size
    _stars(sc, int(rng.integers(20, 150) * sc.unit**2), 0.04, 1.5)
    count = int(rng.integers(4, 10))
    cand = rng.uniform(0.1, 0.9, (60, 2)) * s
    min_sep = s * float(rng.uniform(0.08, 0.16))
    chosen: list[np.ndarray] = []
    for p in cand:
        if all(np.hypot(*(p - c)) >= min_sep for c in chosen):
            chosen.append(p)
        if len(chosen) == count:
            break
    pts = np.array(chosen, np.float32)
    k = len(pts)

    # Prim's minimum spanning tree: short joins, no crossings to speak of, like chart figures.
    dist = np.hypot(pts[:, None, 0] - pts[None, :, 0], pts[:, None, 1] - pts[None, :, 1])
    in_tree = np.zeros(k, bool)
    in_tree[0] = True
    edges: list[tuple[int, int]] = []
    while not in_tree.all():
        sub = np.where(in_tree[:, None] & ~in_tree[None, :], dist, np.inf)
        i, j = np.unravel_index(int(np.argmin(sub)), sub.shape)
        edges.append((int(i), int(j)))
        in_tree[j] = True
    if k >= 4 and rng.random() < 0.4:
        leaves = [i for i in range(k) if sum(i in e for e in edges) == 1]
        if len(leaves) >= 2:
            edges.append((leaves[0], leaves[1]))

    ss = 4
    canvas = Image.new("L", (s * ss, s * ss), 0)
    draw = ImageDraw.Draw(canvas)
    line_w = max(1, int(round(ss * sc.unit * float(rng.uniform(0.5, 1.2)))))
    gap = s * float(rng.uniform(0.015, 0.04))
    for i, j in edges:
        a, b = pts[i], pts[j]
        length = float(np.hypot(*(b - a)))
        if length <= 2 * gap:
            continue
        d = (b - a) / length
        p0, p1 = (a + d * gap + 0.5) * ss, (b - d * gap + 0.5) * ss
        draw.line([(float(p0[0]), float(p0[1])), (float(p1[0]), float(p1[1]))], fill=255, width=line_w)
    lines = np.asarray(canvas.resize((s, s), Image.Resampling.BOX), np.float32) / 255.0
    line_col = np.array([[0.6, 0.8, 1.0], [1.0, 0.85, 0.5], [0.9, 0.9, 0.9]], np.float32)
    line_col = line_col[int(rng.integers(3))]
    sc.light += lines[..., None] * line_col * float(rng.uniform(0.15, 0.5))

    peak = rng.uniform(3.0, 10.0, k).astype(np.float32)
    rgb = peak[:, None] * _star_colours(rng, k)
    sigma = sc.look.psf * float(rng.uniform(1.5, 2.2))
    _splat(sc.light, pts[:, 0], pts[:, 1], rgb, sigma)
    _splat(sc.light, pts[:, 0], pts[:, 1], 0.06 * rgb, sigma * 4.0)


_RENDERERS: dict[str, Callable[[_Scene], None]] = {
    "asteroid": _asteroid,
    "black hole": _black_hole,
    "comet": _comet,
    "constellation": _constellation,
    "galaxy": _galaxy,
    "nebula": _nebula,
    "planet": _planet,
    "star": _star,
}


# --------------------------------------------------------------------------------------
# The photo look's objects: what real deep-sky photos of each class show
# --------------------------------------------------------------------------------------


def _planetary(sc: _Scene) -> None:
    """A planetary nebula: a small glowing shell (round, elliptical or bipolar) that is teal
    (O III) inside and red (H-alpha) at its rim, around a hot central star."""
    rng, s = sc.rng, sc.size
    cx, cy = sc.place(0.12)
    radius = s * _loguniform(rng, 0.04, 0.3)
    u, v = sc.frame(cx, cy, float(rng.uniform(0.0, math.pi)))
    q = float(rng.uniform(0.55, 1.0))
    r = np.sqrt(u * u + (v / q) ** 2)
    width = radius * float(rng.uniform(0.12, 0.4))
    shell = np.exp(-0.5 * ((r - radius) / width) ** 2) + float(rng.uniform(0.1, 0.7)) * np.exp(-0.5 * (r / radius) ** 2)
    if rng.random() < 0.3:  # bipolar: two lobes along the major axis, pinched at the waist
        lobe = np.exp(-0.5 * (((np.abs(u) - 1.3 * radius) / radius) ** 2 + (v / (0.55 * radius)) ** 2))
        shell = shell + float(rng.uniform(0.5, 1.2)) * lobe
    shell = shell * (0.6 + 0.8 * _fractal(rng, s, 8, 3, 0.5))
    rim = _smoothstep(0.4, 1.3, r / radius)[..., None]
    inner = np.array([0.25, 0.85, 0.9], np.float32) * np.exp(rng.normal(0.0, 0.15, 3)).astype(np.float32)
    outer = np.array([1.0, 0.3, 0.35], np.float32) * np.exp(rng.normal(0.0, 0.15, 3)).astype(np.float32)
    sc.light += (shell * float(rng.uniform(0.3, 1.5)))[..., None] * (inner * (1.0 - rim) + outer * rim)
    if rng.random() < 0.4:  # the faint outer halo of older shells
        sc.light += (0.05 * np.exp(-r / (1.5 * radius)))[..., None] * outer
    _splat(sc.light, np.array([cx], np.float32), np.array([cy], np.float32),
           np.array([[0.8, 0.9, 1.0]], np.float32) * float(rng.uniform(0.5, 3.0)), sc.look.psf)


def _remnant(sc: _Scene) -> None:
    """A supernova remnant: a large, broken shell of thin red and teal filaments."""
    rng, s = sc.rng, sc.size
    cx, cy = sc.place(0.15)
    radius = s * float(rng.uniform(0.2, 0.45))
    u, v = sc.frame(cx, cy, float(rng.uniform(0.0, math.pi)))
    r = np.sqrt(u * u + (v / float(rng.uniform(0.75, 1.0))) ** 2)
    shell = np.exp(-0.5 * ((r - radius) / (radius * float(rng.uniform(0.08, 0.25)))) ** 2)
    filaments = (1.0 - np.abs(2.0 * _fractal(rng, s, int(rng.integers(3, 7)), 4, 0.5) - 1.0)) ** float(rng.uniform(6.0, 14.0))
    broken = _smoothstep(0.3, 0.6, _fractal(rng, s, 2, 2, 0.5))
    red, teal = np.array([1.0, 0.25, 0.3], np.float32), np.array([0.3, 0.8, 0.85], np.float32)
    mix = _fractal(rng, s, 3, 3, 0.5)[..., None]
    light = (shell * filaments * broken)[..., None] * (red * mix + teal * (1.0 - mix))
    sc.light += light * float(rng.uniform(0.5, 2.0))


def _dark_nebula(sc: _Scene) -> None:
    """A dark nebula: a dust cloud blotting out a rich star field, sometimes lit at its rim."""
    rng, s = sc.rng, sc.size
    _stars(sc, int(_loguniform(rng, 500.0, 3000.0) * sc.unit**2), 0.04, 2.0)
    cx, cy = sc.place(0.2)
    u, v = sc.frame(cx, cy, float(rng.uniform(0.0, math.pi)))
    sx, sy = s * rng.uniform(0.15, 0.45, 2)
    envelope = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    cloud = _smoothstep(0.25, 0.6, envelope * (0.4 + 0.8 * _fractal(rng, s, 3, 5, 0.55)))
    sc.sky *= (1.0 - float(rng.uniform(0.85, 1.0)) * cloud)[..., None]
    if rng.random() < 0.5:  # a bright rim where a star lights the cloud's edge
        edge = cloud * (1.0 - cloud) * 4.0
        colour = _NEBULA_COLOURS[int(rng.choice([0, 2, 3]))]
        sc.light += (edge * float(rng.uniform(0.05, 0.3)))[..., None] * colour


def _reflection(sc: _Scene) -> None:
    """A reflection nebula: blue dust glowing round one to three bright stars."""
    rng, s = sc.rng, sc.size
    texture = _fractal(rng, s, int(rng.integers(3, 6)), 5, 0.6)
    glow = np.zeros((s, s), np.float32)
    count = int(rng.integers(1, 4))
    xs, ys = np.empty(count, np.float32), np.empty(count, np.float32)
    for k in range(count):
        xs[k], ys[k] = sc.place(0.25)
        reach = s * float(rng.uniform(0.08, 0.3))
        glow += np.exp(-np.sqrt((sc.x - xs[k]) ** 2 + (sc.y - ys[k]) ** 2) / reach)
    colour = np.array([0.35, 0.55, 1.0], np.float32) * np.exp(rng.normal(0.0, 0.1, 3)).astype(np.float32)
    sc.light += (glow * (0.3 + texture) * float(rng.uniform(0.1, 0.6)))[..., None] * colour
    rgb = rng.uniform(2.0, 8.0, count).astype(np.float32)[:, None] * np.array([[0.8, 0.88, 1.0]], np.float32)
    _splat(sc.light, xs, ys, rgb, sc.look.psf * 1.5)
    _splat(sc.light, xs, ys, 0.05 * rgb, sc.look.psf * 6.0)


def _photo_nebula(sc: _Scene) -> None:
    """A nebula as deep-sky photos show them, in roughly Stellarium's proportions: planetary
    nebulae, emission clouds (:func:`_nebula`), reflection and dark nebulae, remnants."""
    kinds = (_planetary, _nebula, _reflection, _dark_nebula, _remnant)
    kinds[int(sc.rng.choice(len(kinds), p=[0.35, 0.3, 0.15, 0.12, 0.08]))](sc)


def _photo_galaxy(sc: _Scene) -> None:
    """A galaxy, or a fifth of the time an interacting pair (a sixth of real galaxy photos)."""
    _galaxy(sc)
    if sc.rng.random() < 0.2:
        _galaxy(sc)


def _rich_cluster(sc: _Scene) -> None:
    """A star cluster as photos frame them, filling much of the frame: a globular cluster of
    thousands of stars or a loose, wide open cluster."""
    rng, s = sc.rng, sc.size
    cx, cy = sc.place(0.1)
    globular = rng.random() < 0.65
    core = s * float(rng.uniform(0.04, 0.12) if globular else rng.uniform(0.12, 0.35))
    n = int((rng.integers(800, 4000) if globular else rng.integers(40, 250)) * sc.unit**2)
    r = core * np.sqrt((1.0 - rng.random(n)) ** (-2.0 / 3.0) - 1.0)
    a = rng.uniform(0.0, 2 * math.pi, n)
    keep = r < 0.75 * s
    x = (cx + r * np.cos(a))[keep].astype(np.float32)
    y = (cy + r * np.sin(a))[keep].astype(np.float32)
    peak = np.minimum((0.04 if globular else 0.2) * (1.0 - rng.random(len(x))) ** (-1.0 / 1.5), 4.0)
    rgb = peak.astype(np.float32)[:, None] * _star_colours(rng, len(x))
    _splat(sc.light, x, y, rgb, sc.look.psf)
    if globular:
        rr = (sc.x - cx) ** 2 + (sc.y - cy) ** 2
        sc.light += (float(rng.uniform(0.1, 0.6)) * (1.0 + rr / core**2) ** -2.0)[..., None] * np.array(
            [1.0, 0.9, 0.7], np.float32)


def _photo_star(sc: _Scene) -> None:
    """Mostly star clusters (what Stellarium's star photos are), some single bright stars."""
    if sc.rng.random() < 0.8:
        _rich_cluster(sc)
    else:
        _single_star(sc)


_PHOTO_RENDERERS: dict[str, Callable[[_Scene], None]] = {
    "galaxy": _photo_galaxy,
    "nebula": _photo_nebula,
    "star": _photo_star,
}


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def render(class_name: str, rng: np.random.Generator, size: int, look: str = "classic") -> np.ndarray:
    """Draw one ``size`` x ``size`` RGB sky image (uint8, HxWx3) of ``class_name`` in one of
    :data:`LOOKS`.

    All randomness comes from ``rng``, so the same generator state gives identical bytes.
    """
    if class_name not in _RENDERERS:
        raise FlareError(f"unknown class {class_name!r}; expected one of: {', '.join(FINE_CLASSES)}")
    if size < MIN_SIZE:
        raise FlareError(f"image size {size} is too small; use at least {MIN_SIZE} pixels")
    if look not in LOOKS:
        raise FlareError(f"unknown look {look!r}; expected one of: {', '.join(LOOKS)}")
    scene = _new_scene(rng, size, look)
    if look == "photo":
        _PHOTO_RENDERERS.get(class_name, _RENDERERS[class_name])(scene)
        return _develop(scene)
    _RENDERERS[class_name](scene)
    return _finish(scene)


def _check_range(name: str, bounds: tuple[float, float], lo: float, hi: float) -> None:
    """Reject a (lo, hi) sampling interval that is reversed or outside [lo, hi]."""
    a, b = bounds
    if not (lo <= a <= b <= hi):
        raise FlareError(f"{name} must be a (low, high) pair with {lo} <= low <= high <= {hi}, got {bounds}")


def degrade(
    img: np.ndarray,
    rng: np.random.Generator,
    scale: int = 4,
    blur_sigma: tuple[float, float] = (0.5, 1.5),
    noise_sigma: tuple[float, float] = (1.0, 6.0),
    jpeg_quality: tuple[int, int] = (40, 90),
) -> np.ndarray:
    """Make the low-resolution twin of ``img``: blur, downsample by ``scale``, noise, JPEG.

    This is the degradation FLARE learns to undo, so each strength is drawn per image from
    its (low, high) interval: the model sees a spread of optics, sensors and compression.
    Returns uint8 HxWx3 of size (H // scale, W // scale); deterministic for a given ``rng``.
    """
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise FlareError(f"degrade expects an HxWx3 uint8 image, got shape {img.shape} and dtype {img.dtype}")
    if scale < 1:
        raise FlareError(f"scale must be at least 1, got {scale}")
    h, w = img.shape[:2]
    if h // scale < 1 or w // scale < 1:
        raise FlareError(f"a {w}x{h} image is too small to shrink by {scale}")
    _check_range("blur_sigma", blur_sigma, 0.0, 50.0)
    _check_range("noise_sigma", noise_sigma, 0.0, 255.0)
    _check_range("jpeg_quality", jpeg_quality, 1, 95)

    sigma = float(rng.uniform(*blur_sigma))
    noise = float(rng.uniform(*noise_sigma))
    quality = int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1))
    pil = Image.fromarray(img)
    if sigma > 0:
        pil = pil.filter(ImageFilter.GaussianBlur(sigma))
    pil = pil.resize((w // scale, h // scale), Image.Resampling.BICUBIC)
    small = np.asarray(pil, np.float32)
    small = small + rng.normal(0.0, noise, small.shape).astype(np.float32)
    buf = io.BytesIO()
    quantised = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    Image.fromarray(quantised).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.array(decoded.convert("RGB"))


#: A harsher degradation than the training data's (wider PSF, more sky noise, stronger JPEG):
#: the out-of-domain sets of ``flare experiment`` use it, synthetic and real alike.
HARSHER = {"blur_sigma": (1.0, 2.5), "noise_sigma": (4.0, 12.0), "jpeg_quality": (20, 60)}


@dataclass
class SynthConfig:
    """Settings of one synthetic data set; saved as ``synth.json`` next to the images."""

    per_class: int = 40
    size: int = 128
    seed: int = 0
    scale: int = 4
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    noise_sigma: tuple[float, float] = (1.0, 6.0)
    jpeg_quality: tuple[int, int] = (40, 90)
    look: str = "classic"

    def validate(self) -> None:
        """Raise :class:`FlareError` for settings that cannot give a usable data set."""
        if self.look not in LOOKS:
            raise FlareError(f"unknown look {self.look!r}; expected one of: {', '.join(LOOKS)}")
        if self.per_class < 1:
            raise FlareError(f"per_class must be at least 1, got {self.per_class}")
        if self.size < MIN_SIZE:
            raise FlareError(f"size must be at least {MIN_SIZE} pixels, got {self.size}")
        if self.seed < 0:
            raise FlareError(f"seed must be 0 or more, got {self.seed}")
        if self.scale < 1 or self.size % self.scale:
            raise FlareError(f"scale must be a whole divisor of size {self.size}, got {self.scale}")
        _check_range("blur_sigma", self.blur_sigma, 0.0, 50.0)
        _check_range("noise_sigma", self.noise_sigma, 0.0, 255.0)
        _check_range("jpeg_quality", self.jpeg_quality, 1, 95)

    def to_json(self) -> dict:
        """The settings as plain JSON values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}



def _record_config(out_dir: Path, config: SynthConfig) -> None:
    """Write ``synth.json``, refusing to mix images made with different settings.

    Resuming skips files that exist, so a folder made with another seed, size or degradation
    would silently end up half one data set and half another. Only ``per_class`` may change
    (to grow or shrink the set), because image ``i`` does not depend on it.
    """
    path = out_dir / "synth.json"
    wanted = {**config.to_json(), "classes": list(FINE_CLASSES)}
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FlareError(f"cannot read {path}: {exc}; delete it or pick another output folder") from exc
        found.setdefault("look", "classic")  # sets made before the photo look existed
        differ = sorted(k for k in wanted if k != "per_class" and found.get(k) != wanted[k])
        if differ:
            raise FlareError(
                f"{out_dir} holds images made with different settings ({', '.join(differ)}); "
                "use the same settings to resume, or pick another output folder"
            )
        if found == wanted:
            return
    write_json(path, wanted)


def synthesize(out_dir: Path, config: SynthConfig, progress: Callable[[int], None] | None = None) -> dict:
    """Write ``config.per_class`` HR/LR image pairs per class under ``out_dir``.

    Layout: ``hr/<class>/<slug>_<i:05d>.png`` and the degraded twin under ``lr/<class>/``
    with the same name. Image ``i`` of class ``c`` uses ``default_rng([seed, c, i])``, so it
    does not depend on ``per_class`` and an interrupted run can resume: pairs already on
    disk are skipped. ``progress(n)`` is told how many images finished since its last call.
    """
    config.validate()
    out_dir = Path(out_dir)
    _record_config(out_dir, config)
    hr_root, lr_root = out_dir / "hr", out_dir / "lr"
    written = 0
    for class_idx, name in enumerate(FINE_CLASSES):
        hr_dir, lr_dir = hr_root / name, lr_root / name
        hr_dir.mkdir(parents=True, exist_ok=True)
        lr_dir.mkdir(parents=True, exist_ok=True)
        for i in range(config.per_class):
            file_name = f"{slug(name)}_{i:05d}.png"
            hr_path, lr_path = hr_dir / file_name, lr_dir / file_name
            if not (hr_path.is_file() and lr_path.is_file()):
                rng = np.random.default_rng([config.seed, class_idx, i])
                hr = render(name, rng, config.size, config.look)
                lr = degrade(
                    hr, rng, config.scale, config.blur_sigma, config.noise_sigma, config.jpeg_quality
                )
                save_png(hr, hr_path)
                save_png(lr, lr_path)
                written += 1
            if progress is not None:
                progress(1)
    return {
        "hr": str(hr_root),
        "lr": str(lr_root),
        "per_class": config.per_class,
        "size": config.size,
        "seed": config.seed,
        "look": config.look,
        "count": config.per_class * len(FINE_CLASSES),
        "written": written,
    }
