"""Real photos where they exist, the synthetic sky for the classes they lack.

Stellarium's photos (``flare data stellarium``) cover three of the eight fine classes (galaxy,
nebula, star); planets, comets, asteroids, black holes and constellations have no real photos
there. A mixed set takes every class the real set holds from the real set, and only the
others from the synthetic one, so a model is trained and judged on real photos wherever there
are any, and still knows all eight classes. With ``synthetic="all"`` the synthetic images of
the real classes are added too: Stellarium's "star" photos are star clusters, and a survey
frame's detections are mostly single stars, which only the synthetic star class shows (a
model that must classify single stars and cutouts needs both). Both inputs have ``hr/`` and
``lr/`` twins; the mix links their files (no copies) into the same layout and records in
``mix.json`` where each class came from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from flare.runtime.core.taxonomy import FINE_CLASSES
from flare.runtime.foundation.atomic import write_json
from flare.runtime.foundation.errors import UsageError
from flare.runtime.foundation.paths import check_apart
from flare.training.data.folders import link_tree, scan_image_folder

RECORD = "mix.json"


def _classes(data: Path, name: str) -> dict[str, list[str]]:
    """The files of each class of ``data/hr`` that also have an ``lr`` twin."""
    if not (data / "hr").is_dir() or not (data / "lr").is_dir():
        raise UsageError(f"{name} {data} needs hr/ and lr/ folders (made by 'flare data stellarium' or "
                         "'flare data synth')")
    samples, _ = scan_image_folder(data / "hr")
    files: dict[str, list[str]] = {}
    for s in samples:
        if (data / "lr" / s.path).is_file():
            files.setdefault(s.label, []).append(s.path)
    return files


#: Which synthetic images a mix takes: those of the classes REAL lacks, or all of them.
SYNTHETIC_CHOICES = ("missing", "all")


def mix(real: Path, synthetic: Path, out: Path, synthetic_classes: str = "missing") -> dict[str, dict[str, object]]:
    """Link ``real``'s classes and ``synthetic``'s other classes (or, with ``synthetic_classes``
    ``"all"``, every synthetic image) into ``out``; returns, per class, its source (``real``,
    ``synthetic`` or ``real+synthetic``) and image counts (also written to ``out/mix.json``, last)."""
    if synthetic_classes not in SYNTHETIC_CHOICES:
        raise UsageError(f"--synthetic must be one of {', '.join(SYNTHETIC_CHOICES)}, not {synthetic_classes!r}")
    check_apart((Path(out), "--out"), [(Path(real), "REAL"), (Path(synthetic), "SYNTHETIC")])
    real_files, synthetic_files = _classes(Path(real), "REAL"), _classes(Path(synthetic), "SYNTHETIC")
    out = Path(out)
    for part in ("hr", "lr"):
        shutil.rmtree(out / part, ignore_errors=True)  # a re-mix must not keep links of an earlier one
    record: dict[str, dict[str, object]] = {}
    real_taken: list[str] = []
    for name in FINE_CLASSES:
        taken = {"real": real_files.get(name, [])}
        if not taken["real"] or synthetic_classes == "all":
            taken["synthetic"] = synthetic_files.get(name, [])
        taken = {source: files for source, files in taken.items() if files}
        if not taken:
            continue
        real_taken += taken.get("real", [])
        for source, files in taken.items():
            root = Path(real if source == "real" else synthetic)
            for part in ("hr", "lr"):
                link_tree([(root / part / rel, rel) for rel in files], out / part)
        record[name] = {"source": "+".join(taken), "images": sum(map(len, taken.values())),
                        **{f"{source}_images": len(files) for source, files in taken.items()}}
    write_json(out / RECORD, {"real": str(Path(real).resolve()), "synthetic": str(Path(synthetic).resolve()),
                              "synthetic_classes": synthetic_classes, "classes": record, "real_files": sorted(real_taken)})
    return record


def real_files(data: Path) -> set[str]:
    """The paths (relative to ``hr/`` and ``lr/``) of a mixed set's real photos; empty for a set
    that is not a mix. Scores on real photos alone select their rows by these."""
    record = Path(data) / RECORD
    if not record.is_file():
        return set()
    return set(json.loads(record.read_text(encoding="utf-8")).get("real_files", []))
