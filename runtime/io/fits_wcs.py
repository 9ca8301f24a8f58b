"""Keep a FITS header's world coordinates true when the pixel grid is scaled.

An image enhanced ``s`` times has ``s`` x ``s`` output pixels per input pixel. Pixel ``p``
(FITS counts from 1 at pixel centres) of the output lies at input pixel ``(p - 0.5) / s + 0.5``,
so the reference pixel moves to ``(CRPIX - 0.5) * s + 0.5`` and every pixel step shrinks by
``s``: the CD matrix, or CDELT when the header uses PC + CDELT (a header with PC and no
CDELT gets ``CDELT = 1/s``, the default being 1). SIP distortion polynomials act on pixel
offsets from CRPIX; with offsets ``s`` times larger each coefficient of order ``p + q`` is
multiplied by ``s ** (1 - p - q)``. All of this is done for the primary and every alternate
(``A``-``Z``) description of the two image axes. Lookup-table distortions (``CPDIS``,
``D2IMDIS``) are not rescaled: they are refused rather than left wrong.
"""

from __future__ import annotations

import re
import string

from flare.runtime.foundation.errors import ImageDecodeError

_SIP = re.compile(r"^(A|B|AP|BP)_(\d+)_(\d+)$")


def rescale_wcs(header, scale: int, what: str) -> None:  # header: astropy.io.fits.Header
    """Update ``header`` in place for an image ``scale`` times larger along both image axes."""
    if any(k.startswith(("CPDIS", "D2IMDIS", "DP1", "DP2")) for k in header):
        raise ImageDecodeError(f"{what}: has lookup-table distortions (CPDIS / D2IMDIS), which enhancement "
                               "cannot carry to the new pixel grid; remove them or enhance a copy without a WCS")
    for alt in ("", *string.ascii_uppercase):
        described = any(f"{k}{i}{alt}" in header for k in ("CRPIX", "CTYPE", "CDELT") for i in (1, 2))
        if not described:
            continue
        for i in (1, 2):
            key = f"CRPIX{i}{alt}"
            if key in header:
                header[key] = (float(header[key]) - 0.5) * scale + 0.5
        has_cd = any(f"CD{i}_{j}{alt}" in header for i in (1, 2) for j in (1, 2))
        if has_cd:
            for i in (1, 2):
                for j in (1, 2):
                    key = f"CD{i}_{j}{alt}"
                    if key in header:
                        header[key] = float(header[key]) / scale
        for i in (1, 2):
            key = f"CDELT{i}{alt}"
            if key in header:
                header[key] = float(header[key]) / scale
            elif not has_cd:
                header[key] = (1.0 / scale, "pixel step after enhancement")
    for key in list(header):
        match = _SIP.match(key)
        if match:
            order = int(match.group(2)) + int(match.group(3))
            header[key] = float(header[key]) * float(scale) ** (1 - order)
