"""``flare``: one command for data, training, export and the torch-free runtime.

Sub-commands are defined next to the code they drive (``flare.runtime.commands``,
``flare.training.<stage>.commands``, ``flare.export.commands``) and loaded here on first
use, so the runtime install (no torch) can run ``flare --help``, ``flare classify`` and
``flare triage``.
A user mistake ends in one line on stderr and exit code 1 (2 for bad arguments); a missing
optional dependency names the extra that provides it.
"""

from __future__ import annotations

import importlib
import sys

import click

from flare.runtime.errors import FlareError, UsageError

#: name -> (module, attribute). Module import must stay light (click only at top level).
COMMANDS = {
    "data": ("flare.training.data.commands", "data"),
    "train": ("flare.training.classifiers.commands", "train"),
    "train-sr": ("flare.training.sr.commands", "train_sr"),
    "train-diffusion": ("flare.training.diffusion.commands", "train_diffusion"),
    "augment": ("flare.training.pipeline.commands", "augment"),
    "experiment": ("flare.training.pipeline.commands", "experiment"),
    "export": ("flare.export.commands", "export"),
    "info": ("flare.runtime.commands", "info"),
    "classify": ("flare.runtime.commands", "classify"),
    "triage": ("flare.runtime.commands", "triage"),
    "demo": ("flare.demo", "demo"),
}

#: Top-level module a command may find missing -> (distribution, extra that installs it; None
#: for the base install). tests/test_cli.py checks every entry against pyproject.toml.
INSTALLED_BY = {
    "torch": ("torch", "train"), "torchvision": ("torchvision", "train"), "timm": ("timm", "train"),
    "diffusers": ("diffusers", "train"), "safetensors": ("safetensors", "train"),
    "transformers": ("transformers", "train"), "matplotlib": ("matplotlib", "train"),
    "onnx": ("onnx", "export"), "onnxscript": ("onnxscript", "export"), "onnxslim": ("onnxslim", "export"),
    "onnxruntime": ("onnxruntime", "cpu"), "tensorrt": ("tensorrt", "gpu"), "cuda": ("cuda-python", "gpu"),
    "astropy": ("astropy", None), "numpy": ("numpy", None), "PIL": ("pillow", None),
}


def install_hint(module: str) -> str | None:
    """What to run when ``module`` cannot be imported, or None if it is not ours to install."""
    if module not in INSTALLED_BY:
        return None
    dist, extra = INSTALLED_BY[module]
    if extra is None:
        return f"{dist} is part of the base install; reinstall it: pip install --force-reinstall flare-edge"
    return f"this command needs {dist}, from the '{extra}' extra: pip install 'flare-edge[{extra}]'"


class FlareGroup(click.Group):
    """Loads sub-commands lazily and turns our errors into one line for a person."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)
        except FlareError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
        except ModuleNotFoundError as exc:
            hint = install_hint((exc.name or "").split(".")[0])
            if hint is None:
                raise
            click.echo(f"Error: {hint}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted; finished work is kept (re-run the same command to resume).", err=True)
            ctx.exit(130)


@click.group(cls=FlareGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flare-edge")
def cli() -> None:
    """FLARE Edge: astronomical image classification from training to the telescope."""


def main() -> None:
    cli(prog_name="flare")


if __name__ == "__main__":
    sys.exit(main())
