"""The engine builder against TensorRT 10 and TensorRT 11 without a GPU.

TensorRT cannot be installed here, so the builder runs against a stand-in ``tensorrt``
module made from the symbol tables in ``trt_api_tables.py`` (read from NVIDIA's binding
sources for 10.16 and 11.1, see the file): any attribute the real version lacks raises
AttributeError, so a builder that used, say, ``BuilderFlag.FP16`` on TensorRT 11 fails
here. A static scan adds the attributes read straight off the module, and on a machine
with TensorRT (tests marked ``tensorrt``) the same scan runs against the installed one.
"""

from __future__ import annotations

import ast
import re
import shutil
import sys
import types
from pathlib import Path

import pytest

from flare.runtime.core.engines import PLAN_TAG, Platform, ProfileOptions, plan_version
from flare.runtime.core.manifest import Manifest
from trt_api_tables import TRT10_SYMBOLS, TRT11_SYMBOLS

ROOT = Path(__file__).resolve().parents[1]
TRT_MODULES = [ROOT / "export" / "tensorrt.py", ROOT / "runtime" / "core" / "backends" / "trt_runner.py",
               ROOT / "runtime" / "core" / "engines.py"]
#: STRONGLY_TYPED's value: a real flag (1) in 10.x, kept as a deprecated 0 in 11.
STRONGLY_TYPED = {"10": 1, "11": 0}


class FakeTensorRT(types.ModuleType):
    """A ``tensorrt`` module with only the symbols of one version, recording what the builder asks."""

    def __init__(self, version: str, table: dict[str, bool]) -> None:
        super().__init__("tensorrt")
        self.__version__, self.table, self.calls = version, set(table), []
        for name in {k.split(".")[0] for k in self.table if not k.startswith("_")}:
            setattr(self, name, FakeClass(self, name))

    def record(self, *call: object) -> None:
        self.calls.append(call)


class FakeClass:
    """A class or enum of the fake module: members outside the table raise AttributeError."""

    def __init__(self, trt: FakeTensorRT, kind: str) -> None:
        self._trt, self._kind = trt, kind

    def __call__(self, *args: object) -> FakeObject:
        return FakeObject(self._trt, self._kind, args)

    def __getattr__(self, name: str) -> object:
        if f"{self._kind}.{name}" not in self._trt.table:
            raise AttributeError(f"TensorRT {self._trt.__version__} has no {self._kind}.{name}")
        if self._kind == "NetworkDefinitionCreationFlag" and name == "STRONGLY_TYPED":
            return STRONGLY_TYPED[self._trt.__version__.split(".")[0]]
        return f"{self._kind}.{name}"


class FakeObject:
    """An instance: each method in the table does what the builder needs of it, and is recorded."""

    _kinds = {"create_network": "INetworkDefinition", "create_builder_config": "IBuilderConfig",
              "create_optimization_profile": "IOptimizationProfile", "get_timing_cache": "ITimingCache"}

    def __init__(self, trt: FakeTensorRT, kind: str, args: tuple = (), data: bytes = b"") -> None:
        self._trt, self._kind, self._args, self._data = trt, kind, args, data

    def __getattr__(self, name: str) -> object:
        if f"{self._kind}.{name}" not in self._trt.table:
            raise AttributeError(f"TensorRT {self._trt.__version__} has no {self._kind}.{name}")
        if name == "num_errors":
            return 0

        def method(*args: object) -> object:
            self._trt.record(f"{self._kind}.{name}", *args)
            if name == "parse_from_file":
                return Path(str(args[0])).is_file()
            if name == "build_serialized_network":
                return PLAN_TAG.to_bytes(4, "little") + bytes(20) + bytes(int(p) for p in
                                                                          self._trt.__version__.split(".")[:4])
            if name == "create_timing_cache":
                self._trt.timing_cache = bytes(args[0])
            if name in ("get_timing_cache",):
                return FakeObject(self._trt, "ITimingCache", data=self._trt.timing_cache + b"+measured")
            if name == "serialize":
                return self._data
            return FakeObject(self._trt, self._kinds[name]) if name in self._kinds else None

        return method


def _names(trt: FakeTensorRT, method: str) -> list[tuple]:
    return [c[1:] for c in trt.calls if c[0] == method]


@pytest.fixture
def bundle_copy(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    return copy


@pytest.mark.parametrize("version,table", [("10.16.1.11", TRT10_SYMBOLS), ("11.4.0.106", TRT11_SYMBOLS)])
def test_engines_build_strongly_typed_on_tensorrt_10_and_11(bundle_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                                           version: str, table: dict[str, bool]) -> None:
    from flare.export.tensorrt import add_engines

    trt = FakeTensorRT(version, table)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    here = Platform(tensorrt=version, compute_capability="9.0", gpu="H100")
    manifest = add_engines(bundle_copy, Manifest.load(bundle_copy), ProfileOptions(max_batch=4), platform=here)
    # precision comes from the graph: strongly typed on both, never a precision flag
    flags = _names(trt, "Builder.create_network")[0][0]
    assert flags == (2 if version.startswith("10") else 0)
    assert _names(trt, "IBuilderConfig.set_flag") == []
    shape = _names(trt, "IOptimizationProfile.set_shape")[0]
    assert shape[0] == "image" and shape[1][0] == 1 and shape[3][0] == 4
    engine = manifest.engines[0]
    assert engine.strongly_typed and engine.tensorrt == version and engine.max_batch == 4
    plan = bundle_copy / manifest.files[engine.file].path
    release = ".".join(version.split(".")[:3])
    assert re.fullmatch(rf"model\.trt{re.escape(release)}-sm90\.fp32\.[0-9a-f]{{8}}\.plan", plan.name)
    assert plan_version(plan) == release
    again = Manifest.load(bundle_copy)  # checksums of the new files verify
    assert again.engines == manifest.engines
    # the timing cache is kept in the bundle and fed to the next build
    assert (bundle_copy / "timing.cache").read_bytes() == b"+measured"
    trt.__version__ = version.rsplit(".", 1)[0] + ".99"  # a rebuild (another build of the same release)
    rebuilt = add_engines(bundle_copy, again, platform=here)
    assert trt.timing_cache == b"+measured" and len(rebuilt.engines) == 1
    assert not plan.exists() and (bundle_copy / rebuilt.files[engine.file].path).is_file()  # old file gone
    assert not list(bundle_copy.glob("*.building")) and Manifest.load(bundle_copy).engines == rebuilt.engines


def test_an_engine_for_another_gpu_is_kept_beside_this_ones(bundle_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flare.export.tensorrt import add_engines

    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT("10.16.1.11", TRT10_SYMBOLS))
    for gpu in (Platform("10.16.1.11", "9.0", "H100"), Platform("10.16.1.11", "8.7", "Orin")):
        add_engines(bundle_copy, Manifest.load(bundle_copy), platform=gpu)
    engines = Manifest.load(bundle_copy).engines
    assert sorted(e.compute_capability for e in engines) == ["8.7", "9.0"]


def test_precision_flags_only_where_strong_typing_is_missing(bundle_copy: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A TensorRT older than strong typing (8.6) still gets FP16 from a flag."""
    from flare.export.tensorrt import add_engines

    old = {k: v for k, v in TRT10_SYMBOLS.items() if k != "NetworkDefinitionCreationFlag.STRONGLY_TYPED"}
    trt = FakeTensorRT("8.6.1.6", old)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    manifest = Manifest.load(bundle_copy)
    manifest.precision = "fp16"
    add_engines(bundle_copy, manifest, platform=Platform("8.6.1.6", "8.7", "Orin"))
    assert _names(trt, "Builder.create_network")[0][0] == 0
    assert _names(trt, "IBuilderConfig.set_flag") == [("BuilderFlag.FP16",)]
    assert manifest.engines[0].strongly_typed is False


def _module_attributes(path: Path) -> set[str]:
    """Every ``trt.A.B`` chain read in ``path`` (optional symbols go through getattr, not here)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            chain, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id == "trt":
                found.add(".".join(reversed(chain)))
    return found


def _used() -> set[str]:
    used = set().union(*(_module_attributes(p) for p in TRT_MODULES))
    # a chain's prefixes are read too (trt.Logger.WARNING reads trt.Logger)
    return used | {".".join(u.split(".")[:i]) for u in used for i in range(1, u.count(".") + 1)}


def test_the_scan_sees_the_builder_and_runner() -> None:
    used = _used()
    assert {"Builder", "OnnxParser", "MemoryPoolType.WORKSPACE", "Runtime", "TensorIOMode.INPUT", "nptype"} <= used
    assert not any(u.startswith("BuilderFlag.") for u in used), "precision flags must go through _optional"


@pytest.mark.parametrize("table", [TRT10_SYMBOLS, TRT11_SYMBOLS], ids=["tensorrt-10.16", "tensorrt-11.1"])
def test_every_module_attribute_exists_in_both_versions(table: dict[str, bool]) -> None:
    missing = sorted(u for u in _used() if u not in table)
    assert not missing, f"not in this TensorRT: {missing}"


@pytest.mark.tensorrt
def test_every_module_attribute_exists_in_the_installed_tensorrt() -> None:
    import tensorrt

    for name in sorted(_used()):
        owner = tensorrt
        for part in name.split("."):
            owner = getattr(owner, part)  # AttributeError names the missing symbol


def test_plan_header_version_and_unreadable_headers(tmp_path: Path) -> None:
    plan = tmp_path / "x.plan"
    plan.write_bytes(PLAN_TAG.to_bytes(4, "little") + bytes(20) + bytes([10, 3, 0, 26]) + b"rest")
    assert plan_version(plan) == "10.3.0"
    plan.write_bytes(b"not an engine at all, long enough to have a header")
    assert plan_version(plan) is None
