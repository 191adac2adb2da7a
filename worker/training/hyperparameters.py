"""Training hyperparameters: the documented defaults per method, and a check that names
the key at fault. Standard library only, so the web server can check a form cheaply."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

METHODS = ("dpo", "reward")
_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")

LORA_DEFAULTS: dict[str, Any] = {"r": 16, "alpha": 32, "dropout": 0.05,
                                 "target_modules": "all-linear"}
_COMMON_DEFAULTS: dict[str, Any] = {
    "num_train_epochs": 1,
    "max_steps": -1,  # -1: as many as num_train_epochs takes
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "max_length": 1024,
    "warmup_ratio": 0.1,
    "lr_scheduler_type": "linear",
    "weight_decay": 0.0,
    "logging_steps": 1,
    "seed": 0,
    "activation_checkpointing": False,
    "lora": None,  # or a dict over LORA_DEFAULTS' keys (True: LORA_DEFAULTS)
    "bf16": "auto",  # "auto": mixed bf16 on a CUDA GPU that supports it; never on CPU
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "dpo": {"learning_rate": 5e-6, **_COMMON_DEFAULTS, "beta": 0.1},
    "reward": {"learning_rate": 1e-5, **_COMMON_DEFAULTS, "center_rewards_coefficient": None},
}
"""The documented defaults per method; :func:`validate_hyperparameters` fills in from here."""


class _Rule(NamedTuple):
    kind: type  # int, float or str; bool is never accepted as a number
    ok: Callable[[Any], bool]
    expect: str
    optional: bool = False  # None allowed


_RULES: dict[str, _Rule] = {
    "learning_rate": _Rule(float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "num_train_epochs": _Rule(float, lambda v: 0 < v <= 1000, "a number in (0, 1000]"),
    "max_steps": _Rule(int, lambda v: v == -1 or v > 0, "-1 (use epochs) or an integer > 0"),
    "per_device_train_batch_size": _Rule(int, lambda v: v >= 1, "an integer >= 1"),
    "per_device_eval_batch_size": _Rule(int, lambda v: v >= 1, "an integer >= 1"),
    "gradient_accumulation_steps": _Rule(int, lambda v: v >= 1, "an integer >= 1"),
    "max_length": _Rule(int, lambda v: v >= 8, "an integer >= 8"),
    "warmup_ratio": _Rule(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "lr_scheduler_type": _Rule(str, lambda v: v in _SCHEDULERS, f"one of {_SCHEDULERS}"),
    "weight_decay": _Rule(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "logging_steps": _Rule(int, lambda v: v >= 1, "an integer >= 1"),
    "seed": _Rule(int, lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)"),
    "activation_checkpointing": _Rule(bool, lambda v: True, "true or false"),
    "beta": _Rule(float, lambda v: 0 < v <= 100, "a number in (0, 100]"),
    "center_rewards_coefficient": _Rule(float, lambda v: v >= 0, "a number >= 0 or null",
                                        optional=True),
    "lora.r": _Rule(int, lambda v: 1 <= v <= 1024, "an integer in [1, 1024]"),
    "lora.alpha": _Rule(float, lambda v: v > 0, "a number > 0"),
    "lora.dropout": _Rule(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
}


def _check(key: str, value: Any) -> Any:
    rule = _RULES[key]
    if value is None and rule.optional:
        return None
    is_bool = isinstance(value, bool)
    if rule.kind is float:
        fits = isinstance(value, int | float) and not is_bool and math.isfinite(value)
        value = float(value) if fits else value
    elif rule.kind is int:
        fits = isinstance(value, int) and not is_bool
    else:
        fits = isinstance(value, rule.kind)
    if not fits or not rule.ok(value):
        raise ValueError(f"hyperparameter {key!r} must be {rule.expect}, got {value!r}")
    return value


def _check_lora(value: Any) -> dict[str, Any] | None:
    if value is None or value is False:
        return None
    if value is True:
        return dict(LORA_DEFAULTS)
    if not isinstance(value, dict):
        raise ValueError(f"hyperparameter 'lora' must be null, true or an object with keys "
                         f"{sorted(LORA_DEFAULTS)}, got {value!r}")
    unknown = sorted(set(value) - set(LORA_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown hyperparameter 'lora.{unknown[0]}'; "
                         f"known: {', '.join(sorted(LORA_DEFAULTS))}")
    lora = {**LORA_DEFAULTS, **value}
    for key in ("r", "alpha", "dropout"):
        lora[key] = _check(f"lora.{key}", lora[key])
    targets = lora["target_modules"]
    if not (isinstance(targets, str) and targets
            or isinstance(targets, list) and targets and all(isinstance(t, str) and t
                                                             for t in targets)):
        raise ValueError("hyperparameter 'lora.target_modules' must be \"all-linear\" or a "
                         f"non-empty list of module names, got {targets!r}")
    return lora


def validate_hyperparameters(method: str, hp: dict | None) -> dict:
    """Merge ``hp`` over ``DEFAULTS[method]`` and check every value's type and range.

    Raises ValueError naming the key for an unknown key or a bad value; imports no ML library.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if hp is None:
        hp = {}
    if not isinstance(hp, dict):
        raise ValueError(f"hyperparameters must be an object, got {type(hp).__name__}")
    defaults = DEFAULTS[method]
    unknown = sorted(set(hp) - set(defaults))
    if unknown:
        raise ValueError(f"unknown hyperparameter {unknown[0]!r} for {method} training; "
                         f"known: {', '.join(sorted(defaults))}")
    merged = {**defaults, **hp}
    for key, value in merged.items():
        if key == "lora":
            merged[key] = _check_lora(value)
        elif key == "bf16":
            if value not in ("auto", True, False):
                raise ValueError(f"hyperparameter 'bf16' must be \"auto\", true or false, "
                                 f"got {value!r}")
        else:
            merged[key] = _check(key, value)
    return merged
