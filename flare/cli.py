"""``flare``: one command for data, training, export and the torch-free runtime.

Sub-commands are defined next to the code they drive (``runtime/commands.py``,
``training/commands.py``, ``export/commands.py``) and loaded here on first use, so the
runtime install (no torch) can run ``flare --help``, ``flare classify`` and ``flare triage``.
A user mistake ends in one line on stderr and exit code 1 (2 for bad arguments); a missing
optional dependency names the extra that provides it.
"""

from __future__ import annotations

import importlib
import sys

import click

from runtime.errors import FlareError, UsageError

#: name -> (module, attribute). Module import must stay light (click only at top level).
COMMANDS = {
    "data": ("training.commands", "data"),
    "train": ("training.commands", "train"),
    "train-sr": ("training.sr_commands", "train_sr"),
    "train-diffusion": ("training.diffusion_commands", "train_diffusion"),
    "augment": ("training.augment_commands", "augment"),
    "experiment": ("training.commands", "experiment"),
    "export": ("export.commands", "export"),
    "info": ("runtime.commands", "info"),
    "classify": ("runtime.commands", "classify"),
    "triage": ("runtime.commands", "triage"),
    "demo": ("flare.demo", "demo"),
}

#: Which extra installs a module that a command may find missing.
EXTRA_OF = {
    "torch": "train", "torchvision": "train", "timm": "train", "diffusers": "train",
    "safetensors": "train", "transformers": "train", "onnx": "export", "onnxscript": "export", "onnxslim": "export",
    "onnxruntime": "cpu", "tensorrt": "gpu", "astropy": "cpu",
}


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
            top = (exc.name or "").split(".")[0]
            if top not in EXTRA_OF:
                raise
            extra = EXTRA_OF[top]
            click.echo(f"Error: this command needs {top}, from the '{extra}' extra: "
                       f"pip install 'flare-edge[{extra}]'", err=True)
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
