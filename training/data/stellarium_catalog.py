"""Reader of Stellarium's deep-sky catalogue ``catalog.dat`` (catalogue format 3.x, Stellarium 0.22).

The catalogue is what makes Stellarium's photos usable as labelled data: it gives every
object its type (galaxy, planetary nebula, open cluster...) and its cross-identifications
(NGC 224 is M 31), so a photo can be classed, and held out when it shows a Messier object,
from Stellarium's own data rather than a hand-made list.

The file is a gzip'd Qt ``QDataStream`` (big-endian). It opens with two ``QString``\\s, the
catalogue version and edition, then one record per object until the end. A ``QString`` is
a uint32 byte length (``0xFFFFFFFF`` for a null string) and that many bytes of UTF-16BE.
Stellarium writes its reals with the stream's default double precision, so every real is
a float64 here even where Stellarium keeps a float. The field order (Stellarium 0.22's
``Nebula::readDSO``, catalogue 3.16) is :data:`RECORD_LAYOUT`.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from flare.runtime.foundation.errors import FlareError

#: Each record's fields in stream order: (name, kind); kind ``u32``/``i32``/``f64`` or ``str`` (QString).
#: Catalogue-number fields carry the key that ``names.dat`` uses for that catalogue (upper case).
RECORD_LAYOUT: tuple[tuple[str, str], ...] = (
    ("id", "u32"), ("ra", "f64"), ("dec", "f64"), ("b_mag", "f64"), ("v_mag", "f64"), ("type", "u32"),
    ("morph", "str"), ("major", "f64"), ("minor", "f64"), ("orientation", "i32"),
    ("redshift", "f64"), ("redshift_err", "f64"), ("parallax", "f64"), ("parallax_err", "f64"),
    ("distance", "f64"), ("distance_err", "f64"),
    ("NGC", "u32"), ("IC", "u32"), ("M", "u32"), ("C", "u32"), ("B", "u32"), ("SH2", "u32"), ("VDB", "u32"),
    ("RCW", "u32"), ("LDN", "u32"), ("LBN", "u32"), ("CR", "u32"), ("MEL", "u32"), ("PGC", "u32"), ("UGC", "u32"),
    ("CED", "str"), ("ARP", "u32"), ("VV", "u32"), ("PK", "str"), ("PNG", "str"), ("SNRG", "str"), ("ACO", "str"),
    ("HCG", "str"), ("ESO", "str"), ("VDBH", "str"), ("DWB", "u32"), ("TR", "u32"), ("ST", "u32"), ("RU", "u32"),
    ("VDBHA", "u32"),
)

#: How each catalogue's number is written as a designation, in the order designations are
#: listed (Stellarium's own order); ``{}`` is the number.
DESIGNATION_FORMATS: dict[str, str] = {
    "M": "M {}", "C": "C {}", "NGC": "NGC {}", "IC": "IC {}", "B": "B {}", "SH2": "Sh 2-{}", "VDB": "vdB {}",
    "RCW": "RCW {}", "LDN": "LDN {}", "LBN": "LBN {}", "CR": "Cr {}", "MEL": "Mel {}", "PGC": "PGC {}",
    "UGC": "UGC {}", "CED": "Ced {}", "ARP": "Arp {}", "VV": "VV {}", "PK": "PK {}", "PNG": "PN G{}",
    "SNRG": "SNR G{}", "ACO": "Abell {}", "HCG": "HCG {}", "ESO": "ESO {}", "VDBH": "vdBH {}", "DWB": "DWB {}",
    "TR": "Tr {}", "ST": "St {}", "RU": "Ru {}", "VDBHA": "vdB-Ha {}",
}
CATALOGUES: tuple[str, ...] = tuple(DESIGNATION_FORMATS)

#: Stellarium's object types by code (``Nebula::NebulaType``), in its English wording.
TYPE_NAMES: tuple[str, ...] = (
    "galaxy", "active galaxy", "radio galaxy", "interacting galaxy", "quasar", "star cluster",
    "open star cluster", "globular star cluster", "stellar association", "star cloud", "nebula",
    "planetary nebula", "dark nebula", "reflection nebula", "bipolar nebula", "emission nebula",
    "cluster associated with nebulosity", "HII region", "supernova remnant", "interstellar matter",
    "emission object", "BL Lac object", "blazar", "molecular cloud", "young stellar object",
    "possible quasar", "possible planetary nebula", "protoplanetary nebula", "star", "symbiotic star",
    "emission-line star", "supernova candidate", "supernova remnant candidate", "cluster of galaxies",
    "part of a galaxy", "region of the sky", "object of unknown nature",
)

_FORMATS = {"u32": struct.Struct(">I"), "i32": struct.Struct(">i"), "f64": struct.Struct(">d")}


@dataclass(frozen=True)
class DeepSkyObject:
    """One catalogue record: position and size in degrees, type code, and its catalogue numbers.

    ``numbers`` maps a catalogue key of :data:`CATALOGUES` to the number as text (``"224"``,
    ``"120+09.1"``), only for the catalogues that list the object.
    """

    id: int
    ra: float
    dec: float
    b_mag: float
    v_mag: float
    type: int
    morph: str
    major: float
    minor: float
    numbers: dict[str, str] = field(default_factory=dict)

    @property
    def type_name(self) -> str:
        """Stellarium's English name of the object's type."""
        return TYPE_NAMES[self.type]

    @property
    def messier(self) -> int | None:
        """The Messier number, from the record's own M field (the held-out cross-identification)."""
        return int(self.numbers["M"]) if "M" in self.numbers else None

    @property
    def magnitude(self) -> float:
        """The brighter of the V and B magnitudes (99 where neither is known, as Stellarium writes)."""
        return min(self.v_mag, self.b_mag)

    @property
    def designations(self) -> list[str]:
        """Every catalogue designation of the object, in Stellarium's order (``M 31``, ``NGC 224``...)."""
        return [DESIGNATION_FORMATS[key].format(self.numbers[key]) for key in CATALOGUES if key in self.numbers]


@dataclass(frozen=True)
class Catalogue:
    """A whole ``catalog.dat``: its version and edition strings and its objects in file order."""

    version: str
    edition: str
    objects: list[DeepSkyObject]

    def index(self) -> dict[tuple[str, str], list[DeepSkyObject]]:
        """Objects by (catalogue key, number text), plus ``("DSO", id)`` for Stellarium's own ids."""
        found: dict[tuple[str, str], list[DeepSkyObject]] = {}
        for obj in self.objects:
            found.setdefault(("DSO", str(obj.id)), []).append(obj)
            for key, number in obj.numbers.items():
                found.setdefault((key, number.upper()), []).append(obj)
        return found


class _Stream:
    """A cursor over the decompressed bytes that reads QDataStream values."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def number(self, kind: str) -> float | int:
        fmt = _FORMATS[kind]
        (value,) = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return value

    def string(self) -> str:
        (length,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        if length == 0xFFFFFFFF:
            return ""
        if length % 2 or self.pos + length > len(self.data):
            raise ValueError(f"a string of {length} bytes at byte {self.pos - 4} does not fit")
        text = self.data[self.pos:self.pos + length].decode("utf-16-be")
        self.pos += length
        return text


def _record(stream: _Stream) -> DeepSkyObject:
    """Decode one record and check it is plausible (a wrong layout gives absurd values at once)."""
    values: dict[str, object] = {}
    for name, kind in RECORD_LAYOUT:
        values[name] = stream.string() if kind == "str" else stream.number(kind)
    ra, dec = float(values["ra"]), float(values["dec"])  # type: ignore[arg-type]
    if not (0.0 <= ra <= 2 * math.pi + 1e-6 and abs(dec) <= math.pi / 2 + 1e-6):
        raise ValueError(f"record {values['id']} has RA {ra} / Dec {dec} radians, outside the sky")
    if not 0 <= int(values["type"]) < len(TYPE_NAMES):  # type: ignore[call-overload]
        raise ValueError(f"record {values['id']} has type code {values['type']}, which Stellarium does not define")
    numbers = {}
    for key in CATALOGUES:
        value = values[key]
        text = value.strip() if isinstance(value, str) else (str(value) if value else "")
        if text:
            numbers[key] = text
    return DeepSkyObject(
        id=int(values["id"]), ra=math.degrees(ra) % 360.0, dec=math.degrees(dec),  # type: ignore[call-overload]
        b_mag=float(values["b_mag"]), v_mag=float(values["v_mag"]), type=int(values["type"]),  # type: ignore[arg-type,call-overload]
        morph=str(values["morph"]).strip(), major=float(values["major"]), minor=float(values["minor"]),  # type: ignore[arg-type]
        numbers=numbers,
    )


def read_catalogue(path: Path) -> Catalogue:
    """Read ``catalog.dat``; one-line FlareError naming the file when it is not such a catalogue.

    A truncated or foreign file, or one of a layout other than 3.x, fails the record checks
    (a field read at the wrong offset gives an RA off the sky, a type code Stellarium lacks,
    or a string that runs past the end) instead of yielding wrong labels.
    """
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes())
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise FlareError(f"cannot read {path}: {exc.strerror}") from exc
        raise FlareError(f"{path} is damaged: not a gzip-compressed Stellarium catalogue ({exc})") from exc
    except (EOFError, zlib.error) as exc:
        raise FlareError(f"{path} is damaged: its gzip data is incomplete ({exc})") from exc
    stream = _Stream(data)
    try:
        version, edition = stream.string(), stream.string()
        if not version.startswith("3."):
            raise ValueError(f"catalogue version {version!r}; this reader knows Stellarium's 3.x layout")
        objects = []
        while not stream.at_end():
            objects.append(_record(stream))
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise FlareError(f"{path} is damaged or not a Stellarium 0.22 DSO catalogue: {exc}") from exc
    if not objects:
        raise FlareError(f"{path} is damaged: it holds no objects")
    return Catalogue(version=version, edition=edition, objects=objects)
