"""``flare augment``: FLARE's two augmentation stages and their merge."""

from __future__ import annotations

import click

from training.sr_commands import stage1


@click.group()
def augment() -> None:
    """Build FLARE training sets: stage 1 (SR + standard), stage 2 (diffusion), merge."""


augment.add_command(stage1)
