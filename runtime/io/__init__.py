"""Reading and writing pixels: images and FITS in, WCS kept, PNG (8 / 16 bit), TIFF and FITS out.

Uses the foundation and :mod:`flare.runtime.core.preprocess` (the one definition of stretching).
"""
