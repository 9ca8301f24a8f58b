"""A model stand-in for Ray engine tests: the fake predictor of test_triage, opened per actor.

Ray workers cannot import the tests folder, so the tests register this module (and
test_triage) to be pickled by value. ``pid_dir`` lets a test find the actors to kill them.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from flare.runtime.apps.triage_ray import PredictorInfo
from flare.runtime.foundation.errors import FlareError
from test_triage import FakePredictor


@dataclass(frozen=True)
class FakePredictors:
    """``notes`` are what each opened model reports dropping; ``worker_fingerprint`` makes the
    workers open another model than the driver describes; ``open_error`` fails every open."""

    delay: float = 0.0
    pid_dir: str | None = None
    notes: tuple[str, ...] = ()
    worker_fingerprint: str | None = None
    open_error: str | None = None

    def describe(self) -> PredictorInfo:
        fake = FakePredictor()
        return PredictorInfo(fake.spec, fake.labels, fake.macro_of, fake.fingerprint)

    def open(self, threads: int | None) -> FakePredictor:
        if self.open_error is not None:
            raise FlareError(self.open_error)
        if self.pid_dir is not None:
            Path(self.pid_dir, str(os.getpid())).touch()
        fake = FakePredictor(delay=self.delay)
        fake.notes = list(self.notes)
        fake.fingerprint = self.worker_fingerprint or fake.fingerprint
        return fake


@dataclass
class ActorKiller:
    """A progress callback that SIGKILLs the first actor to have opened a model (of
    ``FakePredictors(pid_dir=...)``), once, mid-run; ``check`` then asserts Ray replaced it."""

    pid_dir: Path
    killed: list[int] = field(default_factory=list)

    def __call__(self, n: int) -> None:
        opened = sorted(self.pid_dir.iterdir())
        if not self.killed and opened:
            victim = int(opened[0].name)
            os.kill(victim, signal.SIGKILL)
            self.killed.append(victim)

    def check(self) -> None:
        assert self.killed, "an actor should have been killed mid-run"
        assert len(list(self.pid_dir.iterdir())) >= 3, "Ray should have started a replacement actor"


def register_by_value() -> None:
    """Let Ray workers unpickle the fakes without the tests folder on their path."""
    import ray.cloudpickle
    import sys

    for name in ("ray_fakes", "test_triage"):
        ray.cloudpickle.register_pickle_by_value(sys.modules[name])
