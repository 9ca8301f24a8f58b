"""benchmarks/real_sky.py's arithmetic: a split's runs become one row, splits one headline."""

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
