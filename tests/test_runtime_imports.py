"""The runtime runs without torch: importing any of its modules must not load it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import flare.runtime

FORBIDDEN = ("torch", "torchvision", "timm", "diffusers", "flare.training", "flare.export")


def runtime_modules() -> list[str]:
    root = Path(flare.runtime.__file__).parent
    return sorted(m.name for m in pkgutil.walk_packages([str(root)], prefix="flare.runtime."))


def test_every_runtime_module_imports_without_torch() -> None:
    modules = runtime_modules()
    assert {"flare.runtime.apps.triage", "flare.runtime.tasks.classify", "flare.runtime.core.backends.ort_runner", "flare.runtime.apps.commands"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(flare.runtime.__file__).anchor)  # not the checkout: only the installed flare
    assert result.stdout.strip() == "", f"runtime imports {result.stdout.strip()}"


def test_runtime_classifies_with_torch_blocked(bundle: Path, sky_data: Path) -> None:
    """Classify and triage in a process where importing torch fails outright."""
    image = sorted((sky_data / "hr").rglob("*.png"))[0]
    code = (
        "import sys\n"
        "for m in ('torch', 'torchvision', 'timm', 'flare.training', 'flare.export'): sys.modules[m] = None\n"
        "from flare.cli import cli\n"
        f"cli(['classify', {str(bundle)!r}, {str(image)!r}, '--top', '2'], prog_name='flare')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(flare.runtime.__file__).anchor)  # not the checkout: only the installed flare
    assert result.returncode == 0, result.stderr
    assert str(image) in result.stdout and "|" in result.stdout
