"""Tests for the synthetic sky data set (training/synth.py): both looks, determinism, layout, resume,
no trivial brightness cue, and the low-resolution degradation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flare.runtime.core.taxonomy import FINE_CLASSES, slug
from flare.runtime.foundation.errors import FlareError
from flare.training.data.synth import LOOKS, SynthConfig, degrade, render, synthesize


def _rng(*seed: int) -> np.random.Generator:
    return np.random.default_rng(list(seed))


@pytest.mark.parametrize("look", LOOKS)
@pytest.mark.parametrize("name", FINE_CLASSES)
def test_render_is_deterministic_per_class(name: str, look: str) -> None:
    a = render(name, _rng(3, 1), 64, look)
    b = render(name, _rng(3, 1), 64, look)
    c = render(name, _rng(4, 1), 64, look)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_looks_differ_and_an_unknown_look_is_refused() -> None:
    assert render("nebula", _rng(5), 64, "photo").tobytes() != render("nebula", _rng(5), 64, "classic").tobytes()
    assert render("nebula", _rng(5), 64).tobytes() == render("nebula", _rng(5), 64, "classic").tobytes()
    with pytest.raises(FlareError, match="unknown look 'glossy'"):
        render("nebula", _rng(5), 64, "glossy")
    with pytest.raises(FlareError, match="unknown look"):
        SynthConfig(look="glossy").validate()


def test_the_photo_look_clips_the_sky_to_black_as_processed_photos_do() -> None:
    def sky(look: str) -> float:  # the darkest tenth of each image, over many images
        return float(np.median([np.percentile(render(name, _rng(21, c, i), 64, look).mean(axis=2), 10)
                                for c, name in enumerate(FINE_CLASSES) for i in range(4)]))

    assert sky("photo") < 4.0 < 10.0 < sky("classic")


def test_render_odd_size_and_bad_arguments() -> None:
    assert render("black hole", _rng(0), 45).shape == (45, 45, 3)
    with pytest.raises(FlareError, match="unknown class"):
        render("quasar", _rng(0), 64)
    with pytest.raises(FlareError, match="at least 32"):
        render("star", _rng(0), 31)


def test_classes_differ_for_the_same_rng_state() -> None:
    images = {render(name, _rng(9), 64).tobytes() for name in FINE_CLASSES}
    assert len(images) == len(FINE_CLASSES)


def test_synthesize_layout_and_resume(tmp_path: Path) -> None:
    config = SynthConfig(per_class=2, size=32, seed=5, scale=4)
    ticks: list[int] = []
    summary = synthesize(tmp_path, config, progress=ticks.append)

    assert summary["count"] == 2 * len(FINE_CLASSES) == sum(ticks)
    assert summary["hr"] == str(tmp_path / "hr") and summary["lr"] == str(tmp_path / "lr")
    assert (summary["per_class"], summary["size"], summary["seed"]) == (2, 32, 5)
    assert json.loads((tmp_path / "synth.json").read_text())["seed"] == 5
    for name in FINE_CLASSES:
        hr = sorted(p.name for p in (tmp_path / "hr" / name).iterdir())
        lr = sorted(p.name for p in (tmp_path / "lr" / name).iterdir())
        assert hr == lr == [f"{slug(name)}_00000.png", f"{slug(name)}_00001.png"]
        with Image.open(tmp_path / "hr" / name / hr[0]) as im:
            assert im.size == (32, 32) and im.mode == "RGB"
        with Image.open(tmp_path / "lr" / name / lr[0]) as im:
            assert im.size == (8, 8) and im.mode == "RGB"
    assert (tmp_path / "hr" / "black hole").is_dir()

    files = sorted(tmp_path.rglob("*.png"))
    assert len(files) == 2 * 2 * len(FINE_CLASSES)
    before = {p: p.stat().st_mtime_ns for p in files}
    again = synthesize(tmp_path, config)
    assert again["written"] == 0
    assert {p: p.stat().st_mtime_ns for p in sorted(tmp_path.rglob("*.png"))} == before


def test_synthesize_resumes_missing_files_and_ignores_per_class(tmp_path: Path) -> None:
    big = SynthConfig(per_class=2, size=32, seed=1)
    synthesize(tmp_path / "big", big)
    small = synthesize(tmp_path / "small", SynthConfig(per_class=1, size=32, seed=1))
    assert small["count"] == len(FINE_CLASSES)
    name = f"{slug('comet')}_00000.png"
    for kind in ("hr", "lr"):
        a = (tmp_path / "big" / kind / "comet" / name).read_bytes()
        assert a == (tmp_path / "small" / kind / "comet" / name).read_bytes()

    lost = tmp_path / "big" / "lr" / "galaxy" / f"{slug('galaxy')}_00001.png"
    original = lost.read_bytes()
    lost.unlink()
    assert synthesize(tmp_path / "big", big)["written"] == 1
    assert lost.read_bytes() == original


def test_synthesize_rejects_bad_or_mixed_settings(tmp_path: Path) -> None:
    with pytest.raises(FlareError, match="per_class"):
        synthesize(tmp_path, SynthConfig(per_class=0))
    with pytest.raises(FlareError, match="size"):
        synthesize(tmp_path, SynthConfig(size=16))
    with pytest.raises(FlareError, match="divisor"):
        synthesize(tmp_path, SynthConfig(size=50, scale=4))
    synthesize(tmp_path, SynthConfig(per_class=1, size=32, seed=0))
    with pytest.raises(FlareError, match="seed"):
        synthesize(tmp_path, SynthConfig(per_class=1, size=32, seed=1))
    with pytest.raises(FlareError, match=r"different settings \(look\)"):
        synthesize(tmp_path, SynthConfig(per_class=1, size=32, seed=0, look="photo"))


def test_a_set_made_before_looks_existed_resumes_as_classic(tmp_path: Path) -> None:
    synthesize(tmp_path, SynthConfig(per_class=1, size=32, seed=0))
    record = json.loads((tmp_path / "synth.json").read_text())
    assert record["look"] == "classic"
    del record["look"]
    (tmp_path / "synth.json").write_text(json.dumps(record))
    assert synthesize(tmp_path, SynthConfig(per_class=2, size=32, seed=0))["written"] == len(FINE_CLASSES)
    with pytest.raises(FlareError, match="look"):
        synthesize(tmp_path, SynthConfig(per_class=2, size=32, seed=0, look="photo"))


def test_photo_sets_render_in_the_photo_look(tmp_path: Path) -> None:
    synthesize(tmp_path, SynthConfig(per_class=1, size=32, seed=3, look="photo"))
    assert json.loads((tmp_path / "synth.json").read_text())["look"] == "photo"
    written = np.asarray(Image.open(tmp_path / "hr" / "galaxy" / f"{slug('galaxy')}_00000.png"))
    expected = render("galaxy", np.random.default_rng([3, FINE_CLASSES.index("galaxy"), 0]), 32, "photo")
    assert written.tobytes() == expected.tobytes()


@pytest.mark.parametrize("look", LOOKS)
def test_mean_brightness_alone_does_not_separate_classes(look: str) -> None:
    per_class, half = 20, 10
    means = np.array(
        [
            [render(name, _rng(11, c, i), 64, look).mean() for i in range(per_class)]
            for c, name in enumerate(FINE_CLASSES)
        ]
    )
    assert (means.std(axis=1) > 3.0).all(), "every class should vary in brightness"

    centres = means[:, :half].mean(axis=1)
    test = means[:, half:]
    predicted = np.abs(test[..., None] - centres[None, None, :]).argmin(axis=-1)
    truth = np.arange(len(FINE_CLASSES))[:, None]
    accuracy = float((predicted == truth).mean())
    assert accuracy < 0.4, f"mean brightness alone classifies {accuracy:.0%} correctly"


def test_degrade_reduces_resolution_and_is_deterministic() -> None:
    hr = render("constellation", _rng(2), 128)
    a = degrade(hr, _rng(1))
    b = degrade(hr, _rng(1))
    c = degrade(hr, _rng(2))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()
    assert degrade(hr, _rng(1), scale=2).shape == (64, 64, 3)

    # A one-pixel checkerboard is pure high frequency: after degradation it must be gone.
    checker = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)
    lr = degrade(np.repeat(checker[..., None], 3, axis=2), _rng(0), noise_sigma=(0.0, 0.0))
    assert lr.shape == (16, 16, 3)
    assert lr.astype(np.float32).std() < 10.0 and abs(float(lr.mean()) - 127.5) < 15.0


def test_degrade_rejects_bad_input() -> None:
    with pytest.raises(FlareError, match="uint8"):
        degrade(np.zeros((8, 8), np.uint8), _rng(0))
    with pytest.raises(FlareError, match="jpeg_quality"):
        degrade(np.zeros((8, 8, 3), np.uint8), _rng(0), jpeg_quality=(90, 40))
