"""Progress bars and status lines for long work, on stderr so stdout stays parseable."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

import click


def log(message: str) -> None:
    """One status line for a person (stderr)."""
    click.echo(message, err=True)


class Bar:
    """A progress bar whose length may be known only once the work is planned.

    Call :meth:`start` with the total (or give it up front), then call the bar with the
    number of items finished. On a terminal it draws a bar; elsewhere click prints one line.
    """

    def __init__(self, label: str, total: int | None = None) -> None:
        self.label = label
        self._bar: Any = None
        if total is not None:
            self.start(total)

    def start(self, total: int) -> None:
        if total > 0 and self._bar is None:
            self._bar = click.progressbar(length=total, label=self.label, file=sys.stderr,
                                          show_pos=True, show_eta=True, width=30)
            self._bar.__enter__()

    def __call__(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@contextlib.contextmanager
def progress_bar(total: int | None, label: str) -> Iterator[Bar]:
    """A :class:`Bar` that is closed when the block ends, however it ends."""
    bar = Bar(label, total)
    try:
        yield bar
    finally:
        bar.close()
