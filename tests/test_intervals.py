"""Means over seeds and paired differences, against values worked by hand."""

from __future__ import annotations

import pytest

pytest.importorskip("scipy")

from flare.training.pipeline.intervals import estimate, paired_difference


def test_three_seeds_give_the_t_interval() -> None:
    # mean 0.5, sample sd 0.1, t(0.975, 2) = 4.302653; half-width 4.302653 * 0.1 / sqrt(3) = 0.248414
    e = estimate([0.4, 0.5, 0.6])
    assert e.mean == pytest.approx(0.5)
    assert (e.low, e.high) == (pytest.approx(0.5 - 0.248414, abs=1e-6), pytest.approx(0.5 + 0.248414, abs=1e-6))
    assert e.significant is True  # the interval excludes zero


def test_pairing_removes_what_the_seeds_share() -> None:
    # the arms differ a lot between seeds but by nearly the same amount within each seed
    flare, raw = [0.50, 0.70, 0.90], [0.45, 0.66, 0.84]
    d = paired_difference(flare, raw)
    assert d.mean == pytest.approx(0.05)  # differences 0.05, 0.04, 0.06: sd 0.01
    assert d.high - d.low == pytest.approx(2 * 4.302653 * 0.01 / 3 ** 0.5, abs=1e-6)
    assert d.significant is True
    assert paired_difference([0.5, 0.6], [0.6, 0.5]).significant is False  # +0.1 and -0.1


def test_one_seed_makes_no_claim() -> None:
    e = estimate([0.7])
    assert (e.mean, e.low, e.high, e.significant) == (0.7, None, None, None)
    with pytest.raises(ValueError, match="differ in number"):
        paired_difference([0.1], [0.1, 0.2])
