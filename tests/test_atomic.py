"""Files and folders that later steps treat as done are replaced atomically."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

import flare.runtime.foundation.atomic as atomic
from flare.runtime.foundation.atomic import publish_folder, write_json


def make_bundle(folder: Path, version: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(20):
        (folder / f"part{i}.bin").write_bytes(bytes([version]) * 4096)
    write_json(folder / "manifest.json", {"version": version, "parts": 20})
    return folder


def complete(folder: Path) -> int:
    """The version of a complete bundle at ``folder``; raises if it is missing or mixed.

    The folder is pinned by a directory descriptor first, so everything is read from the one
    folder the name pointed to at that instant.
    """
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        def read(name: str) -> bytes:
            file = os.open(name, os.O_RDONLY, dir_fd=fd)
            with os.fdopen(file, "rb") as f:
                return f.read()

        version = json.loads(read("manifest.json"))["version"]
        parts = [n for n in os.listdir(fd) if n.startswith("part")]
        assert len(parts) == 20 and all(read(p) == bytes([version]) * 4096 for p in parts)
        return version
    finally:
        os.close(fd)


def test_a_reader_always_sees_a_complete_bundle_while_it_is_replaced(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    removed: list[Path] = []  # old folders are removed after the test, not under a pinned reader
    monkeypatch.setattr(atomic.shutil, "rmtree", lambda path, *a, **k: removed.append(Path(path)))
    out = make_bundle(tmp_path / "bundle", 0)
    seen: set[int] = set()
    failures: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add(complete(out))
            except BaseException as exc:  # noqa: BLE001 - any failure is the finding
                failures.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in range(1, 30):
            publish_folder(make_bundle(tmp_path / f"stage{version}", version), out)
    finally:
        stop.set()
        thread.join()
    assert failures == [] and complete(out) == 29 and len(seen) > 1
    # every old bundle ended in a stage folder that publish_folder removed
    assert sorted(p.name for p in removed) == sorted(f"stage{v}" for v in range(1, 30))


def test_without_exchange_one_complete_copy_always_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the file system cannot swap, the old folder is renamed aside, never deleted first."""
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    out = make_bundle(tmp_path / "bundle", 1)
    renames: list[tuple[str, str]] = []
    real_rename = atomic.os.rename

    def watching_rename(src: Path, dst: Path) -> None:
        # before each step: the old or the new bundle is complete somewhere on disk
        candidates = [tmp_path / "bundle", tmp_path / "bundle.previous", tmp_path / "stage"]
        assert any(c.exists() and complete(c) in (1, 2) for c in candidates)
        renames.append((Path(src).name, Path(dst).name))
        real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", watching_rename)
    publish_folder(make_bundle(tmp_path / "stage", 2), out)
    assert renames == [("bundle", "bundle.previous"), ("stage", "bundle")]
    assert complete(out) == 2 and not (tmp_path / "bundle.previous").exists()


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = write_json(tmp_path / "results.json", {"done": 1})

    class Boom(Exception):
        pass

    def half_then_fail(path: Path) -> None:
        path.write_text('{"done": ')
        raise Boom

    with pytest.raises(Boom):
        atomic.write_atomically(target, half_then_fail)
    assert json.loads(target.read_text()) == {"done": 1} and not list(tmp_path.glob("*.part"))
