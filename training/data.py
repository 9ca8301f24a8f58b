"""Datasets on disk: SpaceNet's Kaggle layout, any ImageFolder tree, and leak-free splits.

Why grouping matters: SpaceNet keeps an original and all its augmented and generated variants
side by side (``<class>_page_<p>_image_<n>[_aug<K>|_<K>]_SwinIR_large.png``). A random split
puts variants of one original in train and test, which inflates test accuracy. Every split
here keeps one original's whole group in one split, stratified by class and seeded, and every
later step (training, export calibration, experiments) reads the same split file.
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import FlareError, UsageError
from runtime.imageio import is_supported
from runtime.taxonomy import FINE_CLASSES, MACRO_OF, fine_from_folder

SPACENET_ROOT = "SpaceNet.FLARE.imam_alam"
#: The original image's identity in SpaceNet file names.
SPACENET_GROUP = re.compile(r"^(?P<group>.+?_page_\d+_image_\d+)")
#: Our own variant naming (stage 1 and 2 outputs): ``<original stem>__<variant>``.
VARIANT_SEP = "__"
SPLIT_COLUMNS = ["path", "label", "group", "split"]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One image file and its fine class name (path relative to the data root)."""

    path: str
    label: str


def resolve_root(data: Path) -> Path:
    """Descend into SpaceNet's root folder when given the folder that holds it."""
    data = Path(data)
    if not data.is_dir():
        raise UsageError(f"{data} is not a folder of images (expected one sub-folder per class)")
    inner = data / SPACENET_ROOT
    return inner if inner.is_dir() else data


def scan_image_folder(data: Path) -> tuple[list[Sample], list[str]]:
    """List ``<root>/<class>/**/<image>`` files; returns samples and the class names in order.

    Folders named after FLARE's fine classes (``black hole``, ``black_hole``, any case) map to
    the taxonomy and keep its order; any other ImageFolder tree uses its folder names sorted.
    """
    root = resolve_root(data)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UsageError(f"{root} has no class sub-folders (expected <root>/<class>/<image>)")
    mapped = {f: fine_from_folder(f.name) for f in folders}
    flare_tree = all(mapped.values())
    samples = []
    for folder in folders:
        label = mapped[folder] if flare_tree else folder.name
        for f in sorted(folder.rglob("*")):
            if f.is_file() and is_supported(f) and not any(p.startswith(".") for p in f.relative_to(root).parts):
                samples.append(Sample(f.relative_to(root).as_posix(), label))
    if not samples:
        raise UsageError(f"{root} has class folders but no image files in them")
    present = sorted(set(s.label for s in samples))
    classes = [c for c in FINE_CLASSES if c in present] if flare_tree else present
    return samples, classes


def group_of(path: str, regex: re.Pattern[str] | None = None) -> str:
    """The original image a file derives from, used to keep its variants together.

    ``regex`` (from ``--group-regex``) wins; its named group ``group`` or first group is the
    key. Otherwise SpaceNet's ``<class>_page_<p>_image_<n>`` prefix, then our own
    ``<stem>__<variant>`` convention, then the file stem.
    """
    stem = Path(path).name.split(".")[0]
    if regex is not None:
        m = regex.search(Path(path).name)
        if m:
            return m.groupdict().get("group") or (m.group(1) if m.groups() else m.group(0))
        return stem
    m = SPACENET_GROUP.match(stem)
    if m:
        return m.group("group")
    return stem.split(VARIANT_SEP)[0]


def split_groups(samples: list[Sample], val: float = 0.15, test: float = 0.15, seed: int = 0,
                 group_regex: str | None = None) -> list[dict[str, str]]:
    """A seeded, class-stratified split where all files of one group share a split."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise UsageError(f"--val {val} and --test {test} must be fractions that sum below 1")
    try:
        regex = re.compile(group_regex) if group_regex else None
    except re.error as exc:
        raise UsageError(f"--group-regex {group_regex!r} is not a valid regular expression: {exc}") from exc
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[group_of(s.path, regex)].append(s)
    by_class: dict[str, list[str]] = defaultdict(list)
    for g, members in groups.items():
        label = Counter(m.label for m in members).most_common(1)[0][0]
        by_class[label].append(g)
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for label in sorted(by_class):
        names = sorted(by_class[label])
        rng.shuffle(names)
        n = len(names)
        n_test = int(round(n * test)) if test > 0 else 0
        n_val = int(round(n * val)) if val > 0 else 0
        if n >= 3:  # every split sees every class when the class allows it
            n_test, n_val = max(n_test, 1 if test > 0 else 0), max(n_val, 1 if val > 0 else 0)
        for i, g in enumerate(names):
            assignment[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    rows = []
    for g, members in groups.items():
        for s in members:
            rows.append({"path": s.path, "label": s.label, "group": g, "split": assignment[g]})
    rows.sort(key=lambda r: r["path"])
    return rows


def write_split(rows: list[dict[str, str]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=SPLIT_COLUMNS)
        w.writeheader()
        w.writerows(rows)


def read_split(path: Path, root: Path | None = None) -> list[dict[str, str]]:
    """Read a split file; with ``root``, check that every listed image exists under it."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"split file {path} does not exist; make one with 'flare data split'")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or any(c not in reader.fieldnames for c in SPLIT_COLUMNS):
            raise FlareError(f"{path} is not a split file (needs columns {','.join(SPLIT_COLUMNS)})")
        rows = list(reader)
    bad = [r for r in rows if r["split"] not in SPLITS]
    if bad:
        raise FlareError(f"{path}: split must be train, val or test (row for {bad[0]['path']})")
    if root is not None:
        base = resolve_root(root)
        missing = [r["path"] for r in rows if not (base / r["path"]).is_file()]
        if missing:
            raise FlareError(f"{path} lists {len(missing)} files missing under {base}, e.g. {missing[0]}; "
                             "was it made for another data folder?")
    return rows


def labels_for(level: str, classes: list[str]) -> tuple[list[str], dict[str, str], dict[str, str]]:
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
