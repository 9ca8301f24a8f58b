"""Leak-free splits: every file of one original image (its group) lands in one split.

Why grouping matters: SpaceNet keeps an original and all its augmented and generated variants
side by side (``<class>_page_<p>_image_<n>[_aug<K>|_<K>]_SwinIR_large.png``). A random split
puts variants of one original in train and test, which inflates test accuracy. Every split
here keeps one original's whole group in one split, stratified by class and seeded, and every
later step (training, export calibration, experiments) reads the same split file.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from flare.runtime.foundation.atomic import write_text
from flare.runtime.foundation.errors import FlareError, UsageError
from flare.training.data.folders import Sample, resolve_root

#: The original image's identity in SpaceNet file names.
SPACENET_GROUP = re.compile(r"^(?P<group>.+?_page_\d+_image_\d+)")
#: Our own variant naming (stage 1 and 2 outputs): ``<original stem>__<variant>``.
VARIANT_SEP = "__"
SPLIT_COLUMNS = ["path", "label", "group", "split"]
SPLITS = ("train", "val", "test")


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


def check_split(rows: list[dict[str, str]], source: str | Path) -> None:
    """FlareError unless the split can train a classifier and give a meaningful score.

    That needs two classes or more, and every class in train, val and test: a class missing
    from validation or test makes the best checkpoint or the reported accuracy a number over
    nothing (0 images, NaN loss), which is worse than no number at all.
    """
    classes = sorted({r["label"] for r in rows})
    if len(classes) < 2:
        raise FlareError(f"{source} has {len(classes)} class{'es' if len(classes) != 1 else ''} "
                         f"({', '.join(classes) or 'no images'}); a classifier needs at least two: "
                         "give one sub-folder of images per class")
    used = {s: {r["label"] for r in rows if r["split"] == s} for s in SPLITS}
    for label in classes:
        missing = [s for s in SPLITS if label not in used[s]]
        if missing:
            groups = len({r["group"] for r in rows if r["label"] == label})
            raise FlareError(f"{source}: class {label!r} has no {' or '.join(missing)} images (it has {groups} "
                             f"original image{'s' if groups != 1 else ''}; each class needs at least 3 so train, "
                             "val and test all see it): add images of that class, or remove its folder")


def write_split(rows: list[dict[str, str]], out: Path, columns: list[str] = SPLIT_COLUMNS) -> Path:
    """Write a split file atomically (training reads it as the definition of the split).

    An existing file is replaced only if it has this split's header, i.e. an earlier run
    wrote it: flare never writes over a file it did not make.
    """
    out = Path(out)
    if out.is_file():
        with open(out, encoding="utf-8", errors="replace") as f:
            first = f.readline().strip()
        if first != ",".join(columns):
            raise FlareError(f"{out} exists and is not a file this step wrote (its first line is not "
                             f"{','.join(columns)}); pick another --out")
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=columns)
    w.writeheader()
    w.writerows(rows)
    return write_text(Path(out), buf.getvalue())


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


