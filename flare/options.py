"""Options that several commands share, defined once so one concept has one name and one check.

Only click is imported here: ``flare --help`` and the torch-free runtime commands load it.
"""

from __future__ import annotations

import re

import click

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


DEVICE = click.option("--device", type=DeviceType(), default="auto", show_default=True,
                      help="auto (a CUDA GPU when one is usable, else the CPU), cpu, cuda or cuda:N.")


def input_size(default: int | None) -> click.decorators.FC:
    """``--input-size``: the side of the square image a classifier network takes."""
    return click.option("--input-size", type=click.IntRange(min=8), default=default, show_default=default is not None,
                        help="Side in pixels of the classifier's square input.")


SELECT = click.option("--select", type=click.Choice(["random", "percentile"]), default="percentile",
                      show_default=True,
                      help="How stage-2 samples are chosen: percentile (FLARE's rule: drop off-class generations) "
                           "or random (the authors' baseline).")
