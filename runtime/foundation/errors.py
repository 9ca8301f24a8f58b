"""Exceptions with messages meant for a person.

Every user mistake (bad path, unreadable file, incompatible bundle) raises a subclass of
:class:`FlareError`. The CLI prints its message on one line and exits 1; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


def one_line(text: str) -> str:
    """``text`` with every run of white space (line breaks included) folded to one space:
    our messages, and the CSV cells that quote errors, are one line each."""
    return " ".join(text.split())


class FlareError(Exception):
    """Base class: the message says what went wrong and what to do."""


class UsageError(FlareError):
    """The arguments cannot work together (the CLI exits 2)."""


class ImageDecodeError(FlareError):
    """A file could not be turned into an image; the message names the file and why."""


class ArtifactError(FlareError):
    """A saved artefact (a training run, a bundle) cannot be read: wrong kind, version or content."""


class BundleError(ArtifactError):
    """A bundle or its manifest cannot be used by this runtime."""


class BackendError(FlareError):
    """No inference backend could run the model on this machine."""


class MissingExtraError(FlareError):
    """An optional dependency group is not installed."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs the '{extra}' extra: pip install 'flare-edge[{extra}]'")
