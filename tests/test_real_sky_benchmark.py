"""The real-sky benchmarks' arithmetic: real_sky.py's splits and runs, sim_to_real.py's looks compared seed by
seed, vae_colour's and diffusion_recognition's measures, stage2_figure's pairing."""

from __future__ import annotations

import pytest

from flare.benchmarks.real_sky import DEMO_SET, markdown, over_splits, summarise


def judged(recalls: dict[str, float], images: dict[str, int]) -> dict:
    per_class = {c: {"images": images[c], "recall": r, "taken_for": {} if r == 1 else {"star": 1}}
                 for c, r in recalls.items()}
    balanced = sum(recalls.values()) / len(recalls)
    return {"balanced_accuracy": balanced, "per_class": per_class, "target_met": balanced >= 0.8}


IMAGES = {"galaxy": 4, "nebula": 2, "star": 2}


def test_splits_are_averaged_by_their_means_and_recalls_pooled_over_every_prediction() -> None:
    first = {"input_size": 96, **summarise([judged({"galaxy": 1.0, "nebula": 0.5, "star": 1.0}, IMAGES),
                                            judged({"galaxy": 0.5, "nebula": 1.0, "star": 1.0}, IMAGES)], [0, 1])}
    second = {"input_size": 96, **summarise([judged({"galaxy": 0.25, "nebula": 0.5, "star": 0.5}, IMAGES)], [1])}
    assert first["balanced_accuracy"] == pytest.approx((2.5 / 3 + 2.5 / 3) / 2)
    assert first["per_class"]["galaxy"]["recall"] == pytest.approx(0.75)  # 6 of 8 predictions
    every = over_splits([first, second])
    assert every["splits"] == 2 and every["runs"] == 3
    assert every["balanced_accuracy"] == pytest.approx((2.5 / 3 + 1.25 / 3) / 2)  # of split means, not of runs
    low, high = every["balanced_interval"]
    assert low < every["balanced_accuracy"] < high
    # galaxy: 4+2 right of 8 on the first split, 1 of 4 on the second
    assert every["per_class"]["galaxy"] == {"recall": pytest.approx(7 / 12), "predictions": 12}
    assert not every["target_met"]

    results = {"model": "resnet18", "epochs": 30, "over_splits": every,
               "splits": {"0": {"test_photos": 8, "models": {DEMO_SET: first}},
                          "1": {"test_photos": 8, "models": {DEMO_SET: second}}}}
    table = markdown(results)
    assert table.count(f"| {DEMO_SET} |") == 2 and "Over the 2 splits (3 models)" in table
    assert f"**{every['balanced_accuracy']:.3f} ± " in table and "missed (>= 0.8, mean)" in table
    assert "- split 1, " + DEMO_SET + ": galaxy: star x1" in table


def look_judged(three: float, eight: float) -> dict:
    per_class = {c: {"images": 2, "recall_8way": eight, "recall_3way": three, "taken_for": {"black hole": 1}}
                 for c in IMAGES}
    return {"balanced_8way": eight, "balanced_3way": three, "per_class": per_class}


def test_sim_to_real_pairs_the_looks_by_seed_and_says_whether_the_gain_is_significant() -> None:
    from flare.benchmarks.sim_to_real import differences, markdown as look_markdown, summarise as look_summary

    looks = {"classic": look_summary([look_judged(0.40, 0.20), look_judged(0.50, 0.10), look_judged(0.45, 0.30)]),
             "photo": look_summary([look_judged(0.60, 0.50), look_judged(0.71, 0.40), look_judged(0.64, 0.62)])}
    assert looks["photo"]["balanced_3way"]["mean"] == pytest.approx(0.65)
    d = differences(looks)
    # seed by seed: +0.20, +0.21, +0.19 (3-way), a steady gain; +0.30, +0.30, +0.32 (8-way)
    assert d["balanced_3way"]["mean"] == pytest.approx(0.20) and d["balanced_3way"]["significant"]
    low, high = d["balanced_3way"]["interval"]
    assert 0 < low < 0.20 < high
    looks["photo"] = look_summary([look_judged(0.60, 0.2), look_judged(0.40, 0.1), look_judged(0.45, 0.3)])
    d = differences(looks)
    assert d["balanced_8way"]["mean"] == pytest.approx(0.0) and not d["balanced_8way"]["significant"]
    assert not d["balanced_3way"]["significant"]

    table = look_markdown({"photos": {"galaxy": 4, "nebula": 2, "star": 2}, "model": "resnet18", "epochs": 30,
                           "input_size": 96, "seeds": 3, "looks": looks, "photo_minus_classic": d})
    assert "| classic | 0.200 (" in table and "8way, paired by seed: 0.000" in table and "not significant" in table
    assert "- photo, galaxy: black hole x3" in table


def test_vae_colour_measures_lit_pixels_distance_from_grey() -> None:
    import numpy as np

    from flare.benchmarks.vae_colour import colour

    def image(rgb: tuple[int, int, int], dark: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
        u = np.zeros((3, 4, 4)) + np.array(dark)[:, None, None]
        u[:, :2] = np.array(rgb)[:, None, None]  # half the image lit
        return u / 127.5 - 1

    grey, red, dim_tint = image((200, 200, 200)), image((255, 0, 0)), image((200, 200, 200), dark=(30, 0, 0))
    assert colour(np.stack([grey, red, dim_tint])) == pytest.approx([0.0, 340 / 3, 0.0])  # dark pixels ignored
    assert colour(np.zeros((1, 3, 4, 4)) - 1)[0] == 0.0  # nothing lit


def test_diffusion_recognition_recalls_come_from_the_confusion_rows() -> None:
    import numpy as np

    from flare.benchmarks.common import class_recalls as recalls

    cm = np.array([[3, 1, 0],    # galaxy samples: 3 of 4 recognised, one taken for a nebula
                   [0, 0, 0],    # no nebula samples: left out, not a recall of 0
                   [2, 0, 2]])   # star: half
    r = recalls(cm, ["galaxy", "nebula", "star"])
    assert list(r) == ["galaxy", "star"]
    assert r["galaxy"] == {"images": 4, "recall": 0.75, "taken_for": {"nebula": 1}}
    assert r["star"]["recall"] == 0.5 and r["star"]["taken_for"] == {"galaxy": 2}


def test_nearest_distances_find_flipped_copies_and_measure_rms() -> None:
    import numpy as np

    from flare.benchmarks.diffusion_recognition import nearest_distances

    rng = np.random.default_rng(0)
    refs = rng.integers(0, 256, (3, 8, 8, 3)).astype(np.uint8)
    copy = np.rot90(refs[1], 1, axes=(0, 1))[:, ::-1]  # a turned and flipped training image
    other = np.clip(refs[2].astype(int) + 10, 0, 255).astype(np.uint8)
    d = nearest_distances(np.stack([copy, other]), refs)
    assert d[0] == pytest.approx(0.0, abs=1e-2)
    expected = np.sqrt(((other.astype(float) - refs[2]) ** 2).mean())
    assert 0 < d[1] <= expected + 1e-3  # refs[2] is within reach; nothing else may be nearer than it claims
    assert d[1] == pytest.approx(min(np.sqrt(((other.astype(float) - r) ** 2).mean()) for r in refs), abs=1e-2)


def test_stage2_figure_pairs_each_generated_image_with_its_own_original(tmp_path) -> None:
    from PIL import Image

    from flare.benchmarks.stage2_figure import pairs

    shades = {"NGC_1": 10, "NGC_2": 200, "IC_5": 90}
    for name, shade in shades.items():
        for folder, suffix in (("stage1_originals", ""), ("stage2", "__gen0"), ("stage2", "__gen1")):
            target = tmp_path / "flare" / folder / "galaxy" / f"{name}{suffix}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            # the generated image is its original's shade + 1, the other variant far off
            Image.new("RGB", (8, 8), (shade + (suffix == "__gen0") + 40 * (suffix == "__gen1"),) * 3).save(target)
    with open(tmp_path / "flare" / "stage2" / "stage2.csv", "w") as f:
        f.write("output,source,class\n" + "".join(f"galaxy/{n}__gen{k}.png,galaxy/{n}.png,galaxy\n"
                                                   for n in shades for k in (1, 0)))
    classes, rows = pairs(tmp_path, per_class=2, side=4)
    assert classes == ["galaxy"] and len(rows[0]) == 4
    firsts = [int(img[0, 0, 0]) for img in rows[0]]
    assert firsts == [90, 91, 200, 201]  # IC_5 and NGC_2: the first and last source by name, each with its __gen0
