"""PSNR and SSIM for super-resolution, as SR papers report them.

Both are computed on the luminance (Y of ITU-R BT.601) of 8-bit RGB images with ``border``
pixels cropped from each side, the convention of SwinIR and its predecessors; SSIM uses
Wang et al.'s 11 x 11 Gaussian window (sigma 1.5) and constants K1 0.01, K2 0.03.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y in [16, 235] from HxWx3 uint8, as float64."""
    x = rgb.astype(np.float64)
    return 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def _crop(y: np.ndarray, border: int) -> np.ndarray:
    return y[border:-border, border:-border] if border else y


def psnr(a: np.ndarray, b: np.ndarray, border: int = 0) -> float:
    """PSNR in dB between two HxWx3 uint8 images on Y; inf for identical images."""
    ya, yb = _crop(luminance(a), border), _crop(luminance(b), border)
    mse = float(np.mean((ya - yb) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _gaussian_filter(x: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """Separable Gaussian over the 'valid' region (no padding), as in Wang et al."""
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(t**2) / (2 * sigma**2))
    g /= g.sum()
    rows = np.apply_along_axis(lambda r: np.convolve(r, g, mode="valid"), 1, x)
    return np.apply_along_axis(lambda c: np.convolve(c, g, mode="valid"), 0, rows)


def ssim(a: np.ndarray, b: np.ndarray, border: int = 0) -> float:
    """Mean SSIM between two HxWx3 uint8 images on Y (data range 255)."""
    x, y = _crop(luminance(a), border), _crop(luminance(b), border)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _gaussian_filter(x), _gaussian_filter(y)
    sxx = _gaussian_filter(x * x) - mx * mx
    syy = _gaussian_filter(y * y) - my * my
    sxy = _gaussian_filter(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The baseline every SR model must beat."""
    h, w = lr.shape[:2]
    return np.asarray(Image.fromarray(lr).resize((w * scale, h * scale), Image.Resampling.BICUBIC))


__all__ = ["bicubic_upscale", "luminance", "psnr", "ssim"]
