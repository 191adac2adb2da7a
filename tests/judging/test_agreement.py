"""Judge-versus-human agreement: percent and Cohen's kappa, overall and per rule."""

from __future__ import annotations

import pytest

from app.judging.agreement import cohen


def test_cohen_kappa_on_a_known_table() -> None:
    # 20 both "first", 15 both "second", 5 judge first/human second, 10 the other way.
    pairs = ([("first", "first")] * 20 + [("second", "second")] * 15
             + [("first", "second")] * 5 + [("second", "first")] * 10)
    result = cohen(pairs)
    assert result.n == 50 and result.percent == pytest.approx(0.7)
    # p_e = (25*30 + 25*20) / 2500 = 0.5  ->  kappa = (0.7 - 0.5) / 0.5
    assert result.kappa == pytest.approx(0.4)


def test_kappa_is_undefined_when_everyone_says_the_same() -> None:
    assert cohen([("first", "first")] * 3).kappa is None
    assert cohen([]).percent is None
