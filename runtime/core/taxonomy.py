"""The FLARE class taxonomy: 8 fine classes and the 4 macro classes they roll up to.

Defined once here, in the torch-free runtime, so training, export and the runtime agree on
names and order. Fine names are SpaceNet's folder names (``black hole`` keeps its space).
A bundle carries its own copy of the labels; this module is the default that training uses.
"""

from __future__ import annotations

import numpy as np

from flare.runtime.foundation.errors import UsageError

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


def output_labels(level: str, classes: list[str]) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Output classes, their macro roll-up, and the map from fine label to output label.

    ``level`` fine keeps ``classes``; macro maps FLARE's fine classes to its 4 macro classes
    (a generic ImageFolder has no macro classes and is refused).
    """
    if level == "fine":
        macro_of = {c: MACRO_OF.get(c, c) for c in classes}
        return classes, macro_of, {c: c for c in classes}
    if level == "macro":
        unknown = [c for c in classes if c not in MACRO_OF]
        if unknown:
            raise UsageError(f"--labels macro needs FLARE's fine classes; {unknown} have no macro class")
        macros = sorted(set(MACRO_OF[c] for c in classes))
        return macros, {m: m for m in macros}, {c: MACRO_OF[c] for c in classes}
    raise UsageError(f"--labels must be fine or macro, not {level!r}")


def macro_probabilities(probs: np.ndarray, labels: list[str], macro_of: dict[str, str]) -> tuple[list[str], np.ndarray]:
    """The one definition of a macro prediction: fine probabilities summed per macro class.

    Returns the macro classes (sorted) and an (N, M) array; its argmax is the macro class
    that ``flare classify`` and ``flare triage`` both report.
    """
    macros = sorted(set(macro_of[c] for c in labels))
    onehot = np.zeros((len(labels), len(macros)), dtype=np.float64)
    for i, c in enumerate(labels):
        onehot[i, macros.index(macro_of[c])] = 1.0
    return macros, np.asarray(probs, dtype=np.float64) @ onehot
