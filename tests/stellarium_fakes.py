"""A tiny Stellarium nebulae folder in the real formats, so the tests need no stellarium-data.

``write_catalog`` is an independent QDataStream writer for Stellarium 0.22's catalogue
(catalogue 3.16): big-endian, QStrings as a uint32 byte length and UTF-16BE, reals as
float64, the fields in ``Nebula::readDSO``'s order, spelled out here rather than taken from
the reader, so a reader that gets the layout wrong fails these tests.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
from PIL import Image

#: Catalogue-number fields after the six distance/redshift reals, in stream order: (name, is_string).
_NUMBER_FIELDS = (
    ("NGC", False), ("IC", False), ("M", False), ("C", False), ("B", False), ("SH2", False), ("VDB", False),
    ("RCW", False), ("LDN", False), ("LBN", False), ("CR", False), ("MEL", False), ("PGC", False),
    ("UGC", False), ("CED", True), ("ARP", False), ("VV", False), ("PK", True), ("PNG", True), ("SNRG", True),
    ("ACO", True), ("HCG", True), ("ESO", True), ("VDBH", True), ("DWB", False), ("TR", False), ("ST", False),
    ("RU", False), ("VDBHA", False),
)


def qstring(text: str) -> bytes:
    data = text.encode("utf-16-be")
    return struct.pack(">I", len(data)) + data


def record(id: int, ra: float, dec: float, type: int, major: float = 0.0, mag: float = 10.0, **numbers: object) -> bytes:
    """One catalogue record; ``ra``/``dec`` in degrees, catalogue numbers by field name (NGC=224)."""
    out = struct.pack(">IddddI", id, math.radians(ra), math.radians(dec), 99.0, mag, type)
    out += qstring("Sb") + struct.pack(">ddi", major, major / 2, 0) + struct.pack(">6d", 99.0, 0, 0, 0, 0, 0)
    for name, is_string in _NUMBER_FIELDS:
        value = numbers.pop(name, None)
        out += qstring(str(value or "")) if is_string else struct.pack(">I", int(value or 0))
    assert not numbers, f"unknown fields {numbers}"
    return out


def write_catalog(path: Path, records: list[bytes], version: str = "3.16") -> Path:
    path.write_bytes(gzip.compress(qstring(version) + qstring("test") + b"".join(records)))
    return path


#: (id, RA, Dec, type code, major axis deg, catalogue numbers) of the fake objects.
OBJECTS = [
    (1, 10.68, 41.27, 0, 3.0, {"NGC": 224, "M": 31, "PGC": 2557}),   # M 31: a Messier object
    (2, 314.7, 44.3, 17, 2.0, {"NGC": 7000, "C": 20, "LBN": 373}),  # HII region, two photos
    (3, 34.75, 57.13, 6, 0.5, {"NGC": 869, "C": 14}),               # open cluster
    (4, 189.09, 25.99, 0, 0.25, {"NGC": 4565, "UGC": 7772}),        # galaxy, matched by position
    (5, 85.25, -2.46, 12, 1.0, {"IC": 434, "B": 33}),               # dark nebula
    (6, 150.0, 20.0, 4, 0.01, {"PGC": 123}),                        # quasar: left out
    (7, 0.02, 16.14, 0, 0.1, {"NGC": 7814, "UGC": 8}),              # galaxy whose quad crosses RA 0
    (8, 201.7, -47.48, 7, 0.6, {"NGC": 5139, "C": 80}),             # globular cluster
    (9, 35.64, 42.35, 3, 0.2, {"NGC": 891, "C": 23}),               # interacting galaxy
    (10, 269.64, 66.63, 11, 0.1, {"NGC": 6543, "C": 6, "PK": "096+29.1"}),  # planetary nebula
    (11, 253.54, -41.83, 6, 0.25, {"NGC": 6231, "CR": 315}),        # open cluster
]

#: (file, centre RA, centre Dec, half side deg, credit key) of the fake photos.
PHOTOS = [
    ("ngc224.png", 10.68, 41.27, 1.5),      # names NGC 224, whose record is M 31
    ("m42.png", 83.82, -5.39, 0.5),         # names a Messier object absent from the catalogue
    ("n7000.png", 314.7, 44.3, 1.2),
    ("ngc7000-2.png", 314.6, 44.2, 0.6),
    ("n869.png", 34.75, 57.13, 0.3),
    ("needle.png", 189.1, 26.0, 0.15),      # no name: position
    ("ic434.png", 85.25, -2.46, 0.5),
    ("p123.png", 150.0, 20.0, 0.05),
    ("n7814.png", 0.02, 16.14, 0.1),        # corners at RA -.0841 and .1241: wraps
    ("n5139.png", 201.7, -47.48, 0.4),
    ("n891.png", 35.64, 42.35, 0.15),
    ("n6543.png", 269.64, 66.63, 0.08),
    ("n6231.png", 253.54, -41.83, 0.2),
    ("lonely.png", 120.0, -80.0, 0.2),      # nothing there: unmatched
]


def _number(value: float) -> str:
    """A number as Stellarium writes them: ``.5`` and ``-.5`` without the leading zero."""
    text = f"{value:.4f}".rstrip("0").rstrip(".") or "0"
    return text.replace("0.", ".", 1) if text.startswith(("0.", "-0.")) else text


def _tile(file: str, ra: float, dec: float, half: float, k: int) -> str:
    corners = [(ra + dx * half / math.cos(math.radians(dec)), dec + dy * half)
               for dx, dy in ((1, -1), (-1, -1), (-1, 1), (1, 1))]
    quad = ", ".join(f"[{_number(a)},{_number(d)}]" for a, d in corners)
    credit = "Short" if k % 2 else "short"
    return (f'{{"imageCredits": {{"{credit}": "Observer {k}", "infoUrl": "https://example.org/{k}"}},'
            f' "imageUrl": "{file}", "worldCoords": [[{quad}]], "textureCoords": [[[0,0],[1,0],[1,1],[0,1]]],'
            f' "minResolution": .2, "maxBrightness": 13}}')


def make_fake_stellarium(folder: Path) -> Path:
    """Write catalog.dat, textures.json (one tile nested), names.dat and small PNGs into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_catalog(folder / "catalog.dat", [record(i, ra, dec, t, major, **nums) for i, ra, dec, t, major, nums in OBJECTS])
    tiles = [_tile(f, ra, dec, half, k) for k, (f, ra, dec, half) in enumerate(PHOTOS)]
    nested = tiles.pop()  # the last photo sits in a sub-tile of the first
    tiles[0] = tiles[0][:-1] + f', "subTiles": [{nested}]}}'
    (folder / "textures.json").write_text(
        '{\n "shortName": "Nebulae", "minResolution" : .05, "alphaBlend" : true,\n "subTiles" : [\n  '
        + ",\n  ".join(tiles) + "\n ]\n}\n", encoding="utf-8")
    (folder / "names.dat").write_text(
        "# Stellarium DSO Catalog Names\n#  1 -  5  string prefix\n#  6 - 20  string id\n# 21 - end name\n"
        'NGC  7000            _("North America Nebula") # WK\n'
        'NGC  224             _("Andromeda Galaxy") # WK\n'
        'IC   434             _("Horsehead Nebula") # WK\n', encoding="utf-8")
    rng = np.random.default_rng(0)
    for k, (file, *_rest) in enumerate(PHOTOS):
        pixels = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        if k % 3 == 1:
            image = image.convert("P")
        elif k % 3 == 2:
            image = image.convert("RGBA")
        image.save(folder / file)
    return folder
