"""Inter-annotator agreement: Krippendorff's alpha and percent agreement, pure numpy.

A *unit* is one thing several coders labeled (an item), given as the values they chose;
a coder who gave no value is simply absent. Only units with at least two values can be
paired, so the others are ignored everywhere here.

Alpha is ``1 - D_o / D_e`` over Krippendorff's coincidence matrix
``o = sum_u (n_u n_u^T - diag(n_u)) / (m_u - 1)``, where ``n_u`` counts unit u's values
and ``m_u`` is their number. We never materialise that V x V matrix: every distance used
here lets ``sum o * delta`` be summed per unit instead, which stays linear in the number
of values and does not explode when interval data has many distinct values.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import numpy.typing as npt

Level = Literal["nominal", "ordinal", "interval"]
LEVELS: tuple[Level, ...] = ("nominal", "ordinal", "interval")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class AgreementSummary:
    alpha: float | None  # None when alpha is undefined (nothing pairable, or no variation)
    percent: float | None  # None when no unit has two values
    units: int  # pairable units
    values: int  # values in pairable units


@dataclass(frozen=True)
class _Pairable:
    sizes: IntArray  # m_u for each pairable unit
    values: list[Hashable]  # their values, unit after unit

    @cached_property
    def unit_ids(self) -> IntArray:
        return np.repeat(np.arange(len(self.sizes), dtype=np.int64), self.sizes)


def krippendorff_alpha(units: Iterable[Sequence[Hashable]],
                       level: Level = "nominal") -> float | None:
    """Krippendorff's alpha at the given level of measurement; None when undefined."""
    _check_level(level)
    return _alpha(_pairable(units), level)


def percent_agreement(units: Iterable[Sequence[Hashable]]) -> float | None:
    """Share of pairs of values within a unit that agree, over all such pairs; None if none."""
    return _percent(_pairable(units))


def summarize(units: Iterable[Sequence[Hashable]], level: Level = "nominal") -> AgreementSummary:
    """Alpha, percent agreement and how much pairable data they rest on, in one pass."""
    _check_level(level)
    data = _pairable(units)
    return AgreementSummary(alpha=_alpha(data, level), percent=_percent(data),
                            units=len(data.sizes), values=len(data.values))


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")


def _pairable(units: Iterable[Sequence[Hashable]]) -> _Pairable:
    sizes: list[int] = []
    values: list[Hashable] = []
    for unit in units:
        if len(unit) >= 2:
            sizes.append(len(unit))
            values.extend(unit)
    return _Pairable(np.asarray(sizes, dtype=np.int64), values)


def _alpha(data: _Pairable, level: Level) -> float | None:
    if level == "nominal":
        return _nominal_alpha(data)
    numbers = np.asarray(data.values, dtype=np.float64)
    if not np.isfinite(numbers).all():
        raise ValueError(f"{level} alpha needs finite numbers")
    distinct, codes, counts = np.unique(numbers, return_inverse=True, return_counts=True)
    if len(distinct) < 2:  # D_e == 0; decided on counts, since float sums are inexact
        return None
    if level == "ordinal":
        # Krippendorff's ordinal distance (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2 is the
        # squared difference of mid-ranks N(c) - n_c / 2, so ordinal is interval on those.
        midranks = np.cumsum(counts) - counts / 2.0
        numbers = midranks[codes.reshape(-1)]
    return _interval_alpha(numbers, data.sizes, data.unit_ids)


def _interval_alpha(x: FloatArray, sizes: IntArray, unit_ids: IntArray) -> float:
    # With delta = (c - k)^2, sum_{i != j in u} (x_i - x_j)^2 = 2 m_u SS_u, and over all
    # values sum n_c n_k delta = 2 n SS; deviations from means keep the sums stable.
    n = len(x)
    means = np.bincount(unit_ids, weights=x) / sizes
    unit_ss = np.bincount(unit_ids, weights=(x - means[unit_ids]) ** 2)
    observed = float(np.sum(sizes * unit_ss / (sizes - 1)))
    expected = float(np.sum((x - x.mean()) ** 2)) * n
    return 1.0 - (n - 1) * observed / expected


def _nominal_alpha(data: _Pairable) -> float | None:
    codes, value_counts = _encode(data.values)
    if len(value_counts) < 2:
        return None
    n = len(codes)
    sizes = data.sizes.astype(np.float64)
    # sum_c o_cc = sum_u (sum_c n_uc^2 - m_u) / (m_u - 1); disagreement is everything else.
    agreeing = float(np.sum((_squared_counts(data, codes) - sizes) / (sizes - 1)))
    observed = n - agreeing
    expected = float(n * n - np.sum(value_counts.astype(np.float64) ** 2))
    return 1.0 - (n - 1) * observed / expected


def _percent(data: _Pairable) -> float | None:
    if len(data.sizes) == 0:
        return None
    codes, _ = _encode(data.values)
    sizes = data.sizes.astype(np.float64)
    # Agreeing pairs in a unit: sum_c C(n_uc, 2) = (sum_c n_uc^2 - m_u) / 2.
    agreeing = float(np.sum(_squared_counts(data, codes) - sizes)) / 2.0
    pairs = float(np.sum(sizes * (sizes - 1))) / 2.0
    return agreeing / pairs


def _encode(values: list[Hashable]) -> tuple[IntArray, IntArray]:
    """Codes 0..V-1 in order of first appearance, and how often each occurs."""
    # A dict rather than np.unique: nominal values need only be hashable, not sortable.
    index: dict[Hashable, int] = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values),
                        dtype=np.int64, count=len(values))
    return codes, np.bincount(codes, minlength=len(index)).astype(np.int64)


def _squared_counts(data: _Pairable, codes: IntArray) -> FloatArray:
    """sum_c n_uc^2 for each pairable unit u."""
    n_codes = int(codes.max()) + 1 if len(codes) else 1
    keys, counts = np.unique(data.unit_ids * n_codes + codes, return_counts=True)
    return np.bincount(keys // n_codes, weights=counts.astype(np.float64) ** 2,
                       minlength=len(data.sizes))
