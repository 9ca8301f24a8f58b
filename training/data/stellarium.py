"""Stellarium's deep-sky photos as a labelled HR/LR data set (``flare data stellarium``).

Stellarium ships a few hundred real photos of deep-sky objects, each placed on the sky by a
quad of RA/Dec corners in ``textures.json``. This module finds the catalogue object each
photo shows (:mod:`flare.training.data.stellarium_catalog` reads ``catalog.dat``), classes it
by the object's Stellarium type through the one table :data:`CLASS_OF_TYPE`, and writes the
same layout as ``flare data synth``: ``hr/<class>/<object>__<k>.png`` and its LR twin made by
:func:`flare.training.data.synth.degrade`, so real and synthetic data train the same way.

Two rules keep the set honest:

* **Messier objects are held out**, by the matched record's own M number (so M 31 is
  excluded when its photo is named after NGC 224 or found by position), and by a file name
  that names a Messier object even when no record matched.
* **One object, one group**: the file stem starts with the object's designation and
  ``__<k>``, so :func:`flare.training.data.splits.group_of` keeps every photo of an object
  in one split.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from flare.runtime.core.taxonomy import slug
from flare.runtime.foundation.atomic import publish_folder, save_png, write_json, write_text
from flare.runtime.foundation.errors import FlareError
from flare.training.data.stellarium_catalog import (
    CATALOGUES,
    DESIGNATION_FORMATS,
    Catalogue,
    DeepSkyObject,
    TYPE_NAMES,
    read_catalogue,
)
from flare.training.data.synth import MIN_SIZE, degrade

#: Where Debian's ``stellarium-data`` package puts the photos and the catalogue.
DEFAULT_DIR = Path("/usr/share/stellarium/nebulae/default")
MARKER = "stellarium.json"
CSV_NAME = "stellarium.csv"
CSV_COLUMNS = ["path", "class", "object_id", "designations", "name", "catalogue_type", "source_file",
               "credit", "info_url", "match", "separation_arcmin"]
INSTALL_HINT = "sudo apt-get install stellarium-data (or pass STELLARIUM_DIR)"

#: FLARE class of each Stellarium object type (``None``: left out, counted by type name).
#: Galaxy clusters count as galaxies (their photos are fields of galaxies); quasars, BL Lac
#: objects and blazars are left out (a point of light, nothing of a galaxy's shape). Clusters
#: with nebulosity, molecular clouds, interstellar matter and protoplanetary nebulae count
#: as nebulae (the gas is what the photo shows). Star clusters, associations and star clouds,
#: and Stellarium's "star" (a single or double star), count as stars. Uncertain types
#: ("possible", "candidate", "unknown"), parts of galaxies, regions and peculiar stars are left out.
CLASS_OF_TYPE: dict[str, str | None] = {
    "galaxy": "galaxy", "active galaxy": "galaxy", "radio galaxy": "galaxy", "interacting galaxy": "galaxy",
    "cluster of galaxies": "galaxy",
    "quasar": None, "BL Lac object": None, "blazar": None, "possible quasar": None, "part of a galaxy": None,
    "nebula": "nebula", "planetary nebula": "nebula", "dark nebula": "nebula", "reflection nebula": "nebula",
    "bipolar nebula": "nebula", "emission nebula": "nebula", "cluster associated with nebulosity": "nebula",
    "HII region": "nebula", "supernova remnant": "nebula", "interstellar matter": "nebula",
    "molecular cloud": "nebula", "protoplanetary nebula": "nebula",
    "possible planetary nebula": None, "supernova candidate": None, "supernova remnant candidate": None,
    "star cluster": "star", "open star cluster": "star", "globular star cluster": "star",
    "stellar association": "star", "star cloud": "star", "star": "star",
    "symbiotic star": None, "emission-line star": None, "emission object": None, "young stellar object": None,
    "region of the sky": None, "object of unknown nature": None,
}
assert set(CLASS_OF_TYPE) == set(TYPE_NAMES), "every Stellarium type needs a row in CLASS_OF_TYPE"

#: File names that name an object: regex on the lower-case name -> catalogue key.
NAME_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), key) for pattern, key in (
        (r"^m(\d+)(?![\d])", "M"), (r"^(?:n|ngc)(\d+)", "NGC"), (r"^ic(\d+)", "IC"), (r"^(?:u|ugc)(\d+)", "UGC"),
        (r"^(?:p|pgc)(\d+)", "PGC"), (r"^sh2-(\d+)", "SH2"), (r"^rcw(\d+)", "RCW"), (r"^ldn(\d+)", "LDN"),
        (r"^lbn(\d+)", "LBN"), (r"^barnard(\d+)", "B"), (r"^vdb(\d+)", "VDB"), (r"^abell(\d+)", "ACO"),
    )
)
#: Catalogue keys tried for a file-safe object id, best known first (M never names an output).
ID_ORDER: tuple[str, ...] = ("NGC", "IC", "C", *(k for k in CATALOGUES if k not in ("M", "C", "NGC", "IC")))
#: A position match must lie within this fraction of the photo's half-diagonal of its centre:
#: the photos are framed on their object, so an object far off-centre is a neighbour.
POSITION_RADIUS = 0.3
#: A position match fills at least this fraction of the photo's side...
FILLS = 0.15
#: ...or, when its size is unknown or small, lies within this fraction of the half-diagonal of
#: the centre and within :data:`CENTRED_ARCMIN` (a wide field's centre is not a small object's).
CENTRED = 0.1
CENTRED_ARCMIN = 3.0


@dataclass(frozen=True)
class Photo:
    """One photo of ``textures.json``: its file, credit, and where it lies on the sky (degrees)."""

    file: str
    credit: str
    info_url: str
    ra: float
    dec: float
    half_diagonal: float

    @property
    def side(self) -> float:
        """The photo's side in degrees (its quads are near square)."""
        return self.half_diagonal * math.sqrt(2.0)

    def separation(self, obj: DeepSkyObject) -> float:
        """Angle in degrees between the photo's centre and ``obj``."""
        return _angle(self.ra, self.dec, obj.ra, obj.dec)


@dataclass(frozen=True)
class Match:
    """The object a photo shows and how it was found (``name`` or ``position``; ``obj`` None when
    unmatched), and whether the photo's name or frame shows a Messier object."""

    obj: DeepSkyObject | None
    method: str
    named_messier: bool
    messier_in_frame: bool


def _unit(ra: float, dec: float) -> np.ndarray:
    r, d = math.radians(ra), math.radians(dec)
    return np.array([math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d)])


def _angle(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    dot = float(np.clip(_unit(ra1, dec1) @ _unit(ra2, dec2), -1.0, 1.0))
    return math.degrees(math.acos(dot))


def _lenient_json(text: str) -> object:
    """Parse Stellarium's JSON, which writes numbers as ``.9794`` and ``-.9794``."""
    return json.loads(re.sub(r"(?<=[\[,:\s])(-?)\.(\d)", r"\g<1>0.\2", text))


def _credit(tile: dict) -> tuple[str, str]:
    """(short credit, info URL) whatever the case of the keys (Stellarium uses both ``short`` and ``Short``)."""
    credits = {str(k).lower(): v for k, v in (tile.get("imageCredits") or {}).items()}
    return str(credits.get("short", "")), str(credits.get("infourl", ""))


def read_photos(folder: Path) -> list[Photo]:
    """Every photo listed in ``folder/textures.json`` (nested sub-tiles included), in file order.

    The photo's centre is the mean of its corners' unit vectors, so a quad across RA 0 (or
    written with a negative RA) is placed right.
    """
    path = Path(folder) / "textures.json"
    try:
        tree = _lenient_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FlareError(f"cannot read {path}: {exc.strerror}; {INSTALL_HINT}") from exc
    except ValueError as exc:
        raise FlareError(f"{path} is damaged: {exc}") from exc
    photos: list[Photo] = []

    def walk(node: dict) -> None:
        for tile in node.get("subTiles", []) or []:
            if not isinstance(tile, dict):
                continue
            if "imageUrl" in tile and tile.get("worldCoords"):
                corners = [c for quad in tile["worldCoords"] for c in quad]
                centre = sum(_unit(float(ra), float(dec)) for ra, dec in corners)
                centre = centre / np.linalg.norm(centre)
                ra = math.degrees(math.atan2(centre[1], centre[0])) % 360.0
                dec = math.degrees(math.asin(float(np.clip(centre[2], -1.0, 1.0))))
                half = max(_angle(ra, dec, float(c[0]), float(c[1])) for c in corners)
                credit, info = _credit(tile)
                photos.append(Photo(str(tile["imageUrl"]), credit, info, ra, dec, half))
            walk(tile)

    if not isinstance(tree, dict):
        raise FlareError(f"{path} is damaged: it is not a JSON object")
    try:
        walk(tree)
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise FlareError(f"{path} is damaged: a sub-tile's worldCoords are not RA/Dec pairs ({exc})") from exc
    return photos


def read_names(folder: Path) -> dict[tuple[str, str], str]:
    """Common names by (catalogue key, number) from ``names.dat``; the first name listed wins.

    Its format (see the file's header): columns 1-5 the catalogue prefix (blank for
    Stellarium's own id), 6-20 the number, then ``_("name")`` and an optional ``# source``.
    A missing ``names.dat`` just means no common names.
    """
    path = Path(folder) / "names.dat"
    if not path.is_file():
        return {}
    names: dict[tuple[str, str], str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("#") or len(line) < 21:
            continue
        name = re.search(r'_\("(.*?)"\)', line[20:])
        if name:
            key = line[:5].strip().upper() or "DSO"
            names.setdefault((key, line[5:20].strip().upper()), name.group(1))
    return names


def _named(photo: Photo) -> list[tuple[str, str]]:
    """(catalogue key, number) that the photo's file name names, e.g. ``n4038-9.png`` -> NGC 4038."""
    stem = Path(photo.file).stem.lower()
    return [(key, str(int(m.group(1)))) for pattern, key in NAME_PATTERNS if (m := pattern.match(stem))]


def _rank(obj: DeepSkyObject, photo: Photo) -> tuple[float, float]:
    """Rank of a position candidate: the one filling more of the frame, then the brighter."""
    return (min(obj.major, photo.side), -obj.magnitude)


def _frames(obj: DeepSkyObject, photo: Photo) -> bool:
    """Whether ``obj`` could be what the photo was framed on: it fills a fair part of the
    frame (:data:`FILLS` of its side), or, for an object of unknown or tiny size, it lies at
    the very centre (:data:`CENTRED` of the half-diagonal and :data:`CENTRED_ARCMIN`). A field of small objects (a tile
    of a Magellanic Cloud mosaic) thus stays unmatched rather than named after one of them."""
    off = photo.separation(obj)
    return obj.major >= FILLS * photo.side or (off <= CENTRED * photo.half_diagonal and 60 * off <= CENTRED_ARCMIN)


def match_photo(photo: Photo, catalogue: Catalogue, index: dict[tuple[str, str], list[DeepSkyObject]],
                positions: np.ndarray) -> Match:
    """The catalogue object ``photo`` shows.

    By name first: an object the file name names, if it lies inside the photo (a wrong or
    ambiguous name, e.g. ``abell31``, a planetary nebula and not the galaxy cluster ACO 31,
    fails this). Otherwise by position: among the objects within :data:`POSITION_RADIUS` of the
    photo's half-diagonal from its centre that could frame it (:func:`_frames`), the one
    filling the most of the frame, then the brightest. ``messier_in_frame`` is any Messier
    object whose centre lies inside the photo, matched or not.
    """
    named = _named(photo)
    named_messier = any(key == "M" for key, _ in named)
    centre = _unit(photo.ra, photo.dec)
    in_frame = np.flatnonzero(positions @ centre >= math.cos(math.radians(photo.half_diagonal)))
    messier_in_frame = any(catalogue.objects[i].messier is not None for i in in_frame)
    inside = [obj for key, number in named for obj in index.get((key, number), [])
              if photo.separation(obj) <= photo.half_diagonal]
    if inside:
        return Match(min(inside, key=photo.separation), "name", named_messier, messier_in_frame)
    near = [catalogue.objects[i] for i in in_frame
            if photo.separation(catalogue.objects[i]) <= POSITION_RADIUS * photo.half_diagonal]
    framing = [obj for obj in near if _frames(obj, photo)]
    if not framing:
        return Match(None, "unmatched", named_messier, messier_in_frame)
    return Match(max(framing, key=lambda obj: _rank(obj, photo)), "position", named_messier, messier_in_frame)


def object_id(obj: DeepSkyObject) -> str:
    """A file-name-safe designation (``NGC_7000``, ``Sh_2-155``): no dots or double underscores,
    so the stem's ``__<k>`` suffix and :func:`splits.group_of` find it."""
    key = next((k for k in ID_ORDER if k in obj.numbers), None)
    text = DESIGNATION_FORMATS[key].format(obj.numbers[key]) if key else f"DSO {obj.id}"
    return re.sub(r"[^A-Za-z0-9+-]+", "_", text).strip("_")


def _load_photo(path: Path, size: int) -> np.ndarray:
    """The photo as an HxWx3 uint8 square of side ``size``.

    Stellarium's photos are square and framed on their object, so resizing keeps the object
    centred; a transparent background (some photos are RGBA or paletted with transparency)
    becomes black sky. A photo that is not square is centre-cropped to its shorter side.
    """
    with Image.open(path) as im:
        im.load()
        rgba = im.convert("RGBA")
    sky = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    rgb = Image.alpha_composite(sky, rgba).convert("RGB")
    w, h = rgb.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def find_installation(folder: Path) -> Path:
    """``folder`` if it holds Stellarium's ``textures.json`` and ``catalog.dat``; else one line
    that names the path and says how to install them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FlareError(f"no Stellarium deep-sky photos at {folder}: {INSTALL_HINT}")
    for name in ("textures.json", "catalog.dat"):
        path = folder / name
        if not path.is_file():
            raise FlareError(f"{folder} has no {name}, so it is not Stellarium's nebulae folder: {INSTALL_HINT}")
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise FlareError(f"cannot read {path}: {exc.strerror}; {INSTALL_HINT}") from exc
    return folder


@dataclass
class StellariumConfig:
    """Settings of one run; recorded in ``stellarium.json``."""

    size: int = 128
    lr_scale: int = 4

    def validate(self) -> None:
        """FlareError for settings that cannot give HR/LR pairs."""
        if self.size < MIN_SIZE:
            raise FlareError(f"--size must be at least {MIN_SIZE} pixels, got {self.size}")
        if self.lr_scale < 1 or self.size % self.lr_scale:
            raise FlareError(f"--lr-scale must be a whole divisor of --size {self.size}, got {self.lr_scale}")


def stellarium_rows(folder: Path) -> tuple[list[dict[str, str]], Counter[str], dict[str, str | int]]:
    """Match and class every photo of a Stellarium installation, without writing anything.

    Returns one row per kept photo in ``textures.json`` order (every CSV column but ``path``,
    which :func:`build_stellarium` adds, plus ``k``, the photo's number among its object's), the left-out counts by reason
    (``messier``: the photo's object or name is a Messier object; ``messier in frame``: another
    Messier object lies inside the photo; ``unmatched``; ``missing file``; ``type: <Stellarium
    type>`` for types :data:`CLASS_OF_TYPE` leaves out), and facts
    about the installation (catalogue version and edition, photo count).
    """
    folder = find_installation(folder)
    catalogue = read_catalogue(folder / "catalog.dat")
    photos = read_photos(folder)
    names = read_names(folder)
    index = catalogue.index()
    positions = np.array([_unit(o.ra, o.dec) for o in catalogue.objects])
    rows: list[dict[str, str]] = []
    left_out: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for photo in photos:
        match = match_photo(photo, catalogue, index, positions)
        obj = match.obj
        if match.named_messier or (obj is not None and obj.messier is not None):
            left_out["messier"] += 1
            continue
        if match.messier_in_frame:
            left_out["messier in frame"] += 1
            continue
        if obj is None:
            left_out["unmatched"] += 1
            continue
        fine = CLASS_OF_TYPE[obj.type_name]
        if fine is None:
            left_out[f"type: {obj.type_name}"] += 1
            continue
        if not (folder / photo.file).is_file():
            left_out["missing file"] += 1
            continue
        oid = object_id(obj)
        seen[oid] += 1
        common = next((names[(k, v.upper())] for k, v in [("DSO", str(obj.id)), *obj.numbers.items()]
                       if (k, v.upper()) in names), "")
        rows.append({
            "class": fine, "object_id": oid, "k": str(seen[oid]), "designations": "; ".join(obj.designations),
            "name": common, "catalogue_type": obj.type_name, "source_file": photo.file, "credit": photo.credit,
            "info_url": photo.info_url, "match": match.method,
            "separation_arcmin": f"{60 * photo.separation(obj):.2f}",
        })
    facts = {"catalogue_version": catalogue.version, "catalogue_edition": catalogue.edition,
             "photos": len(photos), "catalogue_objects": len(catalogue.objects)}
    return rows, left_out, facts


def build_stellarium(folder: Path, out_dir: Path, config: StellariumConfig,
                     progress: Callable[[int], None] | None = None,
                     planned: Callable[[int], None] | None = None) -> dict:
    """Write the data set into ``out_dir``, replacing an earlier run's folder as a whole.

    Built in ``<out>.partial`` and swapped in by :func:`publish_folder` after ``stellarium.json``
    (written last), so ``out_dir`` is always the complete old set or the complete new one.
    Each LR twin's degradation is seeded by its file name, so a re-run is byte-identical.
    ``planned(n)`` is told the number of photos to write, ``progress(n)`` each one written.
    """
    config.validate()
    started = time.monotonic()
    folder, out_dir = Path(folder), Path(out_dir)
    rows, left_out, facts = stellarium_rows(folder)
    if planned is not None:
        planned(len(rows))
    stage = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        for row in rows:
            name = f"{row['object_id']}__{row['k']}.png"
            rel = f"{slug(row['class'])}/{name}"
            hr = _load_photo(folder / row["source_file"], config.size)
            seed = int.from_bytes(rel.encode("utf-8"), "big") % (2**63)
            lr = degrade(hr, np.random.default_rng(seed), config.lr_scale)
            save_png(hr, stage / "hr" / rel)
            save_png(lr, stage / "lr" / rel)
            row["path"] = f"hr/{rel}"
            if progress is not None:
                progress(1)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(stage / CSV_NAME, buf.getvalue())
        classes = Counter(r["class"] for r in rows)
        objects = {c: len({r["object_id"] for r in rows if r["class"] == c}) for c in sorted(classes)}
        summary = {
            "source": str(folder.resolve()), **facts, "size": config.size, "lr_scale": config.lr_scale,
            "degradation": "flare.training.data.synth.degrade, defaults, seeded by each file's class/name",
            "count": len(rows), "per_class": dict(sorted(classes.items())), "objects_per_class": objects,
            "matched_by": dict(sorted(Counter(r["match"] for r in rows).items())),
            "left_out": dict(sorted(left_out.items())), "left_out_total": sum(left_out.values()),
        }
        write_json(stage / MARKER, summary)
        publish_folder(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return {**summary, "seconds": round(time.monotonic() - started, 1)}
