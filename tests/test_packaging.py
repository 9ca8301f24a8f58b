"""One installed namespace: the wheel holds the top-level package ``flare`` and nothing else.

The layers keep their folders at the repository root (``training/``, ``export/``,
``runtime/``); setuptools maps them to ``flare.training``, ``flare.export`` and
``flare.runtime``. Generic top-level names would collide with other distributions.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = {"flare": "flare", "runtime": "flare.runtime", "export": "flare.export", "training": "flare.training"}


def source_modules() -> set[str]:
    """Every module of the source folders under its installed name."""
    found = set()
    for folder, package in LAYERS.items():
        for path in (REPO / folder).rglob("*.py"):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found.add(".".join([package, *parts]))
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the tracked files (the checkout stays clean)."""
    pytest.importorskip("setuptools")
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True)
    (wheel,) = out.glob("flare_edge-*.whl")
    return wheel


def test_wheel_has_one_top_level_package_holding_every_module(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"flare"}
    installed = {n[:-3].replace("/", ".").removesuffix(".__init__") for n in names if n.endswith(".py")}
    assert source_modules() <= installed, sorted(source_modules() - installed)


def test_code_imports_only_through_flare() -> None:
    """No module or test imports the bare folder names (they are not installed)."""
    offenders = []
    for path in (p for folder in (*LAYERS, "tests", "benchmarks") for p in (REPO / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in
                          ("training", "export", "runtime")]
    assert offenders == []
