"""Krippendorff's alpha and percent agreement, against hand values and the krippendorff package."""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Sequence

import krippendorff
import numpy as np
import pytest

from app.analytics.agreement import (
    AgreementSummary,
    krippendorff_alpha,
    percent_agreement,
    summarize,
)

LEVELS = ("nominal", "ordinal", "interval")
NAN = math.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C:
# 4 observers (rows) x 12 units (columns), values 1-5, NaN where an observer gave none.
PAPER_DATA = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
])
PAPER_ALPHA = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849}


def units_of(matrix: np.ndarray) -> list[list[float]]:
    """Coders x units matrix (NaN = missing) -> each unit's values, as our API takes them."""
    return [[float(v) for v in column if not np.isnan(v)] for column in matrix.T]


def reference_alpha(matrix: np.ndarray, level: str) -> float:
    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level))


@pytest.mark.parametrize("level", LEVELS)
def test_paper_example_matches_published_alpha_and_the_package(level: str) -> None:
    alpha = krippendorff_alpha(units_of(PAPER_DATA), level)

    assert alpha is not None
    assert round(alpha, 3) == PAPER_ALPHA[level]
    assert alpha == pytest.approx(reference_alpha(PAPER_DATA, level), abs=1e-12)


def test_paper_example_counts_only_pairable_units() -> None:
    # Unit 12 has a single value (3), so 11 units and 40 values are pairable.
    summary = summarize(units_of(PAPER_DATA), "nominal")

    assert (summary.units, summary.values) == (11, 40)


def test_two_coders_four_units_nominal_by_hand() -> None:
    # Units (a,a) (a,b) (b,b) (b,b): n = 8, n_a = 3, n_b = 5.
    # Coincidences: o_aa = 2, o_ab = o_ba = 1, o_bb = 4.
    # alpha = 1 - (n - 1) * (o_ab + o_ba) / (2 n_a n_b) = 1 - 7 * 2 / 30 = 16 / 30.
    units = [("a", "a"), ("a", "b"), ("b", "b"), ("b", "b")]

    assert krippendorff_alpha(units) == pytest.approx(16 / 30, abs=1e-12)
    assert percent_agreement(units) == pytest.approx(3 / 4)


def test_interval_and_ordinal_by_hand() -> None:
    # Units (1,2) (3,3): n = 4, n_1 = n_2 = 1, n_3 = 2; sum_ck o_ck d_ck = 2 * d(1,2).
    # Interval d = (c-k)^2: sum n_c n_k d = 2 * (1*1*1 + 1*2*4 + 1*2*1) = 22,
    #   alpha = 1 - 3 * 2 / 22 = 8 / 11.
    # Ordinal d(c,k) = (sum_{g=c..k} n_g - (n_c+n_k)/2)^2: d(1,2) = 1, d(1,3) = 6.25,
    #   d(2,3) = 2.25; sum n_c n_k d = 2 * (1 + 2*6.25 + 2*2.25) = 36,
    #   alpha = 1 - 3 * 2 / 36 = 5 / 6.
    units = [(1, 2), (3, 3)]

    assert krippendorff_alpha(units, "interval") == pytest.approx(8 / 11, abs=1e-12)
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(5 / 6, abs=1e-12)


@pytest.mark.parametrize("level", LEVELS)
def test_perfect_agreement_is_one(level: str) -> None:
    units = [(1, 1, 1), (2, 2), (3, 3, 3, 3), (1,), (2, 2)]

    assert krippendorff_alpha(units, level) == pytest.approx(1.0)
    assert percent_agreement(units) == 1.0


def test_percent_agreement_counts_pairs_of_coders_across_units() -> None:
    # (a,a,b): 1 agreeing pair of 3; (x,y): 0 of 1; (z,) has no pair.
    assert percent_agreement([("a", "a", "b"), ("x", "y"), ("z",)]) == pytest.approx(1 / 4)
    # (a,a,a,b): 3 of 6; (c,c): 1 of 1.
    assert percent_agreement([("a", "a", "a", "b"), ("c", "c")]) == pytest.approx(4 / 7)


def test_nominal_values_need_only_be_hashable() -> None:
    as_ints = [(1, 2), (2, 2), (3, 1), (1, 1)]
    mapping: dict[int, Hashable] = {1: "good", 2: None, 3: ("a", 1)}
    as_objects = [tuple(mapping[v] for v in unit) for unit in as_ints]

    assert krippendorff_alpha(as_objects) == pytest.approx(krippendorff_alpha(as_ints))


def random_matrix(rng: np.random.Generator) -> np.ndarray:
    """Coders x units, mostly agreeing, with some values missing and >= 2 pairable values."""
    while True:
        coders, units = int(rng.integers(2, 7)), int(rng.integers(2, 80))
        categories = int(rng.integers(2, 6))
        truth = rng.integers(1, categories + 1, size=units)
        noise = rng.integers(1, categories + 1, size=(coders, units))
        matrix = np.where(rng.random((coders, units)) < rng.random(), truth, noise)
        matrix = matrix.astype(np.float64)
        matrix[rng.random((coders, units)) < rng.uniform(0.0, 0.5)] = np.nan
        pairable = matrix[:, (~np.isnan(matrix)).sum(axis=0) >= 2]
        if len(np.unique(pairable[~np.isnan(pairable)])) >= 2:
            return matrix


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("level", LEVELS)
def test_random_matrices_match_the_krippendorff_package(level: str, seed: int) -> None:
    matrix = random_matrix(np.random.default_rng([seed, LEVELS.index(level)]))

    alpha = krippendorff_alpha(units_of(matrix), level)

    assert alpha is not None
    assert abs(alpha - reference_alpha(matrix, level)) < 1e-9


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("units", [
    [],
    [(1,), (2,), (3,)],  # nothing pairable
    [(2, 2), (2, 2, 2), (1,)],  # one value throughout: D_e == 0
])
def test_undefined_alpha_is_none(level: str, units: Sequence[Sequence[int]]) -> None:
    assert krippendorff_alpha(units, level) is None


def test_percent_agreement_without_pairs_is_none() -> None:
    assert percent_agreement([]) is None
    assert percent_agreement([("a",), ("b",)]) is None


def test_summarize_reads_a_generator_once() -> None:
    units = (u for u in [("a", "a"), ("a", "b"), ("b", "b"), ("b", "b"), ("c",)])

    summary = summarize(units, "nominal")

    assert summary == AgreementSummary(alpha=pytest.approx(16 / 30), percent=0.75,
                                       units=4, values=8)


def test_summarize_of_one_value_throughout_has_percent_but_no_alpha() -> None:
    assert summarize([(1, 1), (1, 1, 1)], "ordinal") == AgreementSummary(
        alpha=None, percent=1.0, units=2, values=5)


def test_unknown_level_is_an_error() -> None:
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([(1, 2)], "ratio")  # type: ignore[arg-type]


def test_numeric_levels_reject_non_finite_values() -> None:
    with pytest.raises(ValueError, match="finite"):
        krippendorff_alpha([(1.0, math.nan), (1.0, 2.0)], "interval")


@pytest.mark.parametrize("level", LEVELS)
def test_a_million_values_match_the_package_within_seconds(level: str) -> None:
    # A generous bound: it takes well under a second; it is here to catch quadratic work.
    rng = np.random.default_rng(7)
    truth = rng.integers(1, 6, size=250_000)
    matrix = np.where(rng.random((4, 250_000)) < 0.7, truth,
                      rng.integers(1, 6, size=(4, 250_000))).astype(np.float64)
    units = matrix.T.tolist()

    started = time.perf_counter()
    alpha = krippendorff_alpha(units, level)
    elapsed = time.perf_counter() - started

    assert alpha is not None
    assert abs(alpha - reference_alpha(matrix, level)) < 1e-9
    assert elapsed < 5.0
