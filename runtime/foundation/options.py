"""Options that several commands share, defined once so one concept has one name and one check.

Every command gets its argument checks from here rather than writing them:

* numbers: a range type (``COUNT``, ``PIXELS``, ``FRACTION``...) on every numeric option, so an
  impossible value is a usage error (exit 2) naming the option before any work;
* paths: :class:`InputPath` and :class:`OutputPath`, checked by :class:`FlareCommand` before
  the command runs: existence, kind, permissions and creatability (one line, exit 1), and an
  output that is, contains or lies inside one of the command's inputs (exit 2);
* ``--device``: :data:`DEVICE`.

Only click and the torch-free :mod:`flare.runtime.foundation.paths` are imported here: ``flare --help``
and the runtime commands load this module.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal

import click

from flare.runtime.foundation.paths import Kind, check_apart, check_input, check_output

#: Key in ``ctx.meta`` of the (type, path, label) of every path parsed for the command.
_PATHS = "flare.paths"

class FiniteRange(click.FloatRange):
    """A real number in a range, and finite: click's FloatRange takes ``nan`` (every comparison with
    it is false, so no bound refuses it) and ``inf`` where a bound is open-ended, and a NaN
    guidance or strength would run to the end and mean nothing."""

    name = "finite float range"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


#: At least one: counts of images, epochs, steps, batch sizes, workers' threads.
COUNT = click.IntRange(min=1)
#: Zero or more: epochs that may be skipped (``--vae-epochs 0``), worker processes.
NON_NEGATIVE = click.IntRange(min=0)
#: Sides of images and patches in pixels.
PIXELS = click.IntRange(min=8)
#: A strictly positive real (learning rates, guidance scales).
POSITIVE = FiniteRange(min=0.0, min_open=True)
#: A fraction of something, 0 to 1 inclusive.
FRACTION = FiniteRange(0.0, 1.0)
#: Random seeds: what numpy and torch both accept.
SEED_RANGE = click.IntRange(0, 2**32 - 1)

SEED = click.option("--seed", type=SEED_RANGE, default=0, show_default=True,
                    help="Random seed (same seed, same result).")


def _label(param: click.Parameter | None) -> str:
    """The parameter as the user typed it: ``--out`` for an option, ``DATA`` for an argument."""
    if param is None:
        return "path"
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.human_readable_name


class _PathType(click.ParamType, ABC):
    """A path the command reads or writes, remembered in ``ctx.meta`` for :class:`FlareCommand`.

    Inputs are checked at once (an input that does not exist is the first thing to say).
    Outputs are checked by :meth:`FlareCommand.invoke`, once every path is parsed: click
    parses arguments after options, and an output that is also an input must be named as
    such whatever the order of the command line.
    """

    role: Literal["input", "output"]

    def __init__(self, kind: Kind = "any") -> None:
        self.kind = kind

    @abstractmethod
    def check(self, path: Path, what: str) -> Path:
        """``path`` if it can be used in this role; FlareError naming ``what`` otherwise."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        what = _label(param)
        path = Path(str(value)).expanduser()
        if self.role == "input":
            self.check(path, what)
        if ctx is not None:
            ctx.meta.setdefault(_PATHS, []).append((self, path, what))
        return path


class InputPath(_PathType):
    """A file or folder the command reads: it must exist, be of ``kind`` and be readable."""

    role = "input"

    @property
    def name(self) -> str:  # type: ignore[override]
        return {"file": "file", "dir": "folder", "any": "path"}[self.kind]

    def check(self, path: Path, what: str) -> Path:
        return check_input(path, self.kind, what)


class OptionalInputPath(InputPath):
    """An input the command can do without (``flare demo --stellarium``): one that exists is
    checked as an input; an absent one is passed on, and the command says what it does instead."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> Path:  # type: ignore[override]
        path = Path(str(value)).expanduser()
        return super().convert(value, param, ctx) if path.exists() else path


class RunOrName(InputPath):
    """A training RUN folder, or the name of an architecture when no such path exists
    (``flare export classifier RUN_OR_NAME``): a path is checked and guarded as an input."""

    name = "run or model name"

    def __init__(self) -> None:
        super().__init__("dir")

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:  # type: ignore[override]
        if Path(str(value)).expanduser().exists():
            super().convert(value, param, ctx)
        return str(value)


class OutputPath(_PathType):
    """A file or folder the command writes; ``made_by`` is the marker file that the step
    leaves in an output folder (see :func:`flare.runtime.foundation.paths.check_output`)."""

    role = "output"

    def __init__(self, kind: Kind = "dir", made_by: str | None = None) -> None:
        super().__init__(kind)
        self.made_by = made_by

    @property
    def name(self) -> str:  # type: ignore[override]
        return "file" if self.kind == "file" else "folder"

    def check(self, path: Path, what: str) -> Path:
        return check_output(path, self.kind, what, self.made_by)

class ResultsPath(OutputPath):
    """Triage results: a ``.csv`` file or a Parquet folder (:func:`flare.runtime.apps.results.results_format`).
    Either may lie inside the survey folder it describes, as a file may: triage reads only
    image files, and leaves its own results out."""

    beside_inputs = True

    def __init__(self) -> None:
        super().__init__("any")


_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def parse_device(text: str) -> str:
    """``text`` normalised (``auto``, ``cpu``, ``cuda`` or ``cuda:N``), or ValueError saying why."""
    value = str(text).strip().lower()
    if not _DEVICE.match(value):
        raise ValueError(f"{text!r} is not a device: use auto, cpu, cuda or cuda:N (N a GPU index)")
    return value


class DeviceType(click.ParamType):
    """``--device``: checked when the command line is parsed, so a typo is a usage error."""

    name = "device"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return parse_device(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class CommaList(click.ParamType):
    """A comma-separated list (``--batch 1,8,32``), each item checked by ``item`` at parse
    time, so a bad element is a usage error naming it; duplicates are dropped, order kept."""

    name = "list"

    def __init__(self, item: click.ParamType) -> None:
        self.item = item

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> list:
        if isinstance(value, list):
            return value
        parts = [part.strip() for part in str(value).split(",")]
        if not all(parts):
            self.fail(f"{value!r} is not a comma-separated list (an empty item)", param, ctx)
        return list(dict.fromkeys(self.item.convert(part, param, ctx) for part in parts))


class FlareCommand(click.Command):
    """Every ``flare`` command: checks all its paths together before it runs.

    Outputs are compared with inputs first (an output that is, contains or lies inside an
    input is a usage error, exit 2), then each output is checked for creatability
    (:func:`flare.runtime.foundation.paths.check_output`, exit 1). tests/test_cli.py checks that every
    command is one of these.
    """

    def invoke(self, ctx: click.Context) -> object:
        parsed: list[tuple[_PathType, Path, str]] = ctx.meta.get(_PATHS, [])
        inputs = [(path, what) for kind, path, what in parsed if kind.role == "input"]
        for kind, path, what in parsed:
            if kind.role == "output":
                check_apart((path, what), inputs,
                            output_is_file=kind.kind == "file" or getattr(kind, "beside_inputs", False))
        for kind, path, what in parsed:
            if kind.role == "output":
                kind.check(path, what)
        return super().invoke(ctx)


class CommandGroup(click.Group):
    """A group of ``flare`` sub-commands (``data``, ``augment``, ``export``): its commands
    are :class:`FlareCommand` without asking."""

    command_class = FlareCommand


DEVICE = click.option("--device", type=DeviceType(), default="auto", show_default=True,
                      help="auto (a CUDA GPU when one is usable, else the CPU), cpu, cuda or cuda:N.")


def input_size(default: int | None) -> click.decorators.FC:
    """``--input-size``: the side of the square image a classifier network takes."""
    return click.option("--input-size", type=PIXELS, default=default, show_default=default is not None,
                        help="Side in pixels of the classifier's square input.")


SELECT = click.option("--select", type=click.Choice(["random", "percentile"]), default="percentile",
                      show_default=True,
                      help="How stage-2 samples are chosen: percentile (FLARE's rule: drop off-class generations) "
                           "or random (the authors' baseline).")


def check_resume(ctx: click.Context, run: Path, recorded: dict[str, object]) -> None:
    """Refuse a ``--resume`` whose command line asks for settings other than the run's.

    A resumed run continues with the settings it was started with (only ``--epochs`` may grow
    and ``--device``/``--workers`` may differ); an option typed now with another value would
    otherwise be silently ignored. ``recorded`` maps parameter names to the run's values.
    """
    typed = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    conflicts = []
    for param in ctx.command.params:
        name = param.name
        if name not in recorded or ctx.get_parameter_source(name) not in typed:
            continue
        given, kept = ctx.params[name], recorded[name]
        if isinstance(given, Path):
            same = kept is not None and given.resolve() == Path(str(kept)).resolve()
        else:
            same = given == kept
        if not same:
            conflicts.append(f"{_label(param)} {given} (the run has {kept if kept is not None else 'none'})")
    if conflicts:
        raise click.UsageError(f"--resume continues {run} with its own settings, but this command asks for "
                               f"{'; '.join(conflicts)}: leave those options out, or start a new run with "
                               f"another --out", ctx)
