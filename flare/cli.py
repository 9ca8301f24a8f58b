"""``flare``: one command for data, training, export and the torch-free runtime.

Sub-commands are defined next to the code they drive (``flare.runtime.apps.commands``,
``flare.training.<stage>.commands``, ``flare.export.commands``) and loaded here on first
use, so the runtime install (no torch) can run ``flare --help``, ``flare classify``,
``flare triage`` and ``flare catalog``.
A user mistake ends in one line on stderr and exit code 1 (2 for bad arguments); a missing
optional dependency names the extra that provides it (see :class:`FlareGroup`).
"""

from __future__ import annotations

import errno
import importlib
import shlex
import sys
from typing import Any

import click

from flare.runtime.foundation.errors import FlareError, UsageError, one_line
from flare.runtime.foundation.paths import os_error_line

#: name -> (module, attribute). Module import must stay light (click only at top level).
COMMANDS = {
    "data": ("flare.training.data.commands", "data"),
    "train": ("flare.training.classifiers.commands", "train"),
    "distill": ("flare.training.distill.commands", "distill"),
    "train-sr": ("flare.training.sr.commands", "train_sr"),
    "train-diffusion": ("flare.training.diffusion.commands", "train_diffusion"),
    "augment": ("flare.training.pipeline.commands", "augment"),
    "experiment": ("flare.training.pipeline.commands", "experiment"),
    "export": ("flare.export.commands", "export"),
    "info": ("flare.runtime.apps.commands", "info"),
    "classify": ("flare.runtime.apps.commands", "classify"),
    "triage": ("flare.runtime.apps.commands", "triage"),
    "catalog": ("flare.runtime.apps.catalog_commands", "catalog"),
    "report": ("flare.runtime.apps.commands", "report"),
    "enhance": ("flare.runtime.apps.commands", "enhance"),
    "generate": ("flare.runtime.apps.commands", "generate"),
    "bench": ("flare.benchmarks.commands", "bench"),
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
    "openvino": ("openvino", "openvino"), "ray": ("ray", "ray"), "pyarrow": ("pyarrow", "parquet"),
    "astropy": ("astropy", None), "numpy": ("numpy", None), "PIL": ("pillow", None),
    "png": ("pypng", None), "tifffile": ("tifffile", None),
    "tokenizers": ("tokenizers", None), "sep": ("sep", None),
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
    """Loads sub-commands lazily and turns every user mistake into one line and an exit code.

    This is the one place where errors become messages, so a new command inherits it: our
    own errors (1, or 2 for :class:`UsageError`), click's argument errors (2), an OS error on
    a path (1, naming the path), a missing extra (1, naming it) and Ctrl-C (130, with the
    exact command that resumes). Anything else is a bug and keeps its traceback.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def main(self, args: list[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        code = self._run(args, prog_name, complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, args: list[str], prog_name: str | None, complete_var: str | None, **extra: Any) -> int:
        """Run the command line; the exit code, after printing any error as one line."""
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            return result if isinstance(result, int) else 0
        except click.UsageError as exc:
            where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            return _fail(exc.format_message() + where, 2)
        except click.ClickException as exc:
            return _fail(exc.format_message(), exc.exit_code)
        except UsageError as exc:
            return _fail(str(exc), 2)
        except FlareError as exc:
            return _fail(str(exc), 1)
        except ModuleNotFoundError as exc:
            hint = install_hint((exc.name or "").split(".")[0])
            if hint is None:
                raise
            return _fail(hint, 1)
        except (KeyboardInterrupt, click.Abort):
            click.echo("", err=True)
            return _fail(f"interrupted; finished work is kept. To go on, run: {self.resume_command(args)}", 130)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # the reader of our output went away (| head): not an error
                return 1
            return _fail(os_error_line(exc), 1)

    def resume_command(self, args: list[str]) -> str:
        """The command line that continues an interrupted run: the same, with ``--resume``
        added for a command that needs it to continue (the others resume by themselves)."""
        command: click.Command = self
        ctx = click.Context(self, info_name="flare")
        for token in args:
            if not isinstance(command, click.Group) or token.startswith("-"):
                continue
            sub = command.get_command(ctx, token)
            if sub is not None:
                command = sub
        needs_flag = any(p.name == "resume" for p in command.params) and "--resume" not in args
        return shlex.join(["flare", *args, *(["--resume"] if needs_flag else [])])


def _fail(message: str, code: int) -> int:
    """Print ``message`` as the one line of an error and return ``code``."""
    click.echo(f"Error: {one_line(message)}", err=True)
    return code


@click.group(cls=FlareGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flare-edge")
def cli() -> None:
    """FLARE Edge: astronomical image classification from training to the telescope."""


def main() -> None:
    cli(prog_name="flare")


if __name__ == "__main__":
    sys.exit(main())
