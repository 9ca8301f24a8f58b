"""Real photos where they exist, the synthetic sky for the classes they lack.

Stellarium's photos (``flare data stellarium``) cover three of the eight fine classes (galaxy,
nebula, star); planets, comets, asteroids, black holes and constellations have no real photos
there. A mixed set takes every class the real set holds from the real set, and only the
others from the synthetic one, so a model is trained and judged on real photos wherever there
are any, and still knows all eight classes. Both inputs have ``hr/`` and ``lr/`` twins; the
mix links their files (no copies) into the same layout and records in ``mix.json`` where each
class came from.
"""

from __future__ import annotations

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


def mix(real: Path, synthetic: Path, out: Path) -> dict[str, dict[str, object]]:
    """Link ``real``'s classes and ``synthetic``'s other classes into ``out``; returns, per class,
    its source and image count (also written to ``out/mix.json``, last)."""
    check_apart((Path(out), "--out"), [(Path(real), "REAL"), (Path(synthetic), "SYNTHETIC")])
    real_files, synthetic_files = _classes(Path(real), "REAL"), _classes(Path(synthetic), "SYNTHETIC")
    out = Path(out)
    for part in ("hr", "lr"):
        shutil.rmtree(out / part, ignore_errors=True)  # a re-mix must not keep links of an earlier one
    record: dict[str, dict[str, object]] = {}
    for name in FINE_CLASSES:
        source, files = (real, real_files[name]) if name in real_files else (synthetic, synthetic_files.get(name, []))
        if not files:
            continue
        for part in ("hr", "lr"):
            link_tree([(Path(source) / part / rel, rel) for rel in files], out / part)
        record[name] = {"source": "real" if source is real else "synthetic", "images": len(files)}
    write_json(out / RECORD, {"real": str(Path(real).resolve()), "synthetic": str(Path(synthetic).resolve()),
                              "classes": record})
    return record
