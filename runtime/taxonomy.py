"""The FLARE class taxonomy: 8 fine classes and the 4 macro classes they roll up to.

Defined once here, in the torch-free runtime, so training, export and the runtime agree on
names and order. Fine names are SpaceNet's folder names (``black hole`` keeps its space).
A bundle carries its own copy of the labels; this module is the default that training uses.
"""

from __future__ import annotations

FINE_CLASSES: tuple[str, ...] = (
    "asteroid",
    "black hole",
    "comet",
    "constellation",
    "galaxy",
    "nebula",
    "planet",
    "star",
)

MACRO_OF: dict[str, str] = {
    "nebula": "Astronomical Patterns",
    "constellation": "Astronomical Patterns",
    "planet": "Celestial Bodies",
    "asteroid": "Celestial Bodies",
    "black hole": "Cosmic Phenomena",
    "comet": "Cosmic Phenomena",
    "star": "Stellar Objects",
    "galaxy": "Stellar Objects",
}

MACRO_CLASSES: tuple[str, ...] = tuple(sorted(set(MACRO_OF.values())))


def slug(name: str) -> str:
    """A file-name-safe form of a class name (``black hole`` -> ``black_hole``)."""
    return name.replace(" ", "_")


def fine_from_folder(folder: str) -> str | None:
    """Map a folder name to a fine class, accepting ``black hole``, ``black_hole`` and case."""
    key = folder.strip().lower().replace("_", " ").replace("-", " ")
    return key if key in MACRO_OF else None
