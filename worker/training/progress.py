"""Progress out of the Trainer: metrics rows (with throughput and ETA), readable log
lines, and the stop check, through a TrainerCallback."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

_LIBRARY_LOGGERS = ("transformers", "trl", "peft", "accelerate", "datasets")

def finite(value: Any) -> Any:
    """JSON-safe numbers: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class _CallbackLogHandler(logging.Handler):
    """Forwards library warnings (dropped rows, precision fallbacks) to ``on_log``."""

    def __init__(self, on_log: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_log = on_log

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.on_log(f"{record.levelname.lower()}: {record.name}: {record.getMessage()}")


@contextlib.contextmanager
def forward_library_logs(on_log: Callable[[str], None]) -> Iterator[None]:
    handler = _CallbackLogHandler(on_log)
    loggers = [logging.getLogger(name) for name in _LIBRARY_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def progress_callback(on_metrics: Callable[[dict], None], on_log: Callable[[str], None],
                       should_stop: Callable[[], bool]) -> Any:
    """A TrainerCallback that forwards each log as a flat dict and polls ``should_stop``.

    ``tokens_per_second`` is measured over the logging window from TRL's ``num_tokens`` (a
    running, all-process count of non-padding tokens fed to the model; in DPO the prompt
    counts once for the chosen and once for the rejected sequence). ``eta_seconds`` is the
    time since training began ÷ steps done × steps left, so the first step's start-up cost
    makes early estimates pessimistic.
    """
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def __init__(self) -> None:
            self.accelerator: Any = None  # set once the trainer exists
            self.cancelled = False
            self.started = self.window_start = time.monotonic()
            self.window_tokens = 0.0

        def _stop_requested(self) -> bool:
            accelerator = self.accelerator
            if accelerator is None or accelerator.num_processes == 1:
                return bool(should_stop())
            # Every process must stop at the same step; the main one decides.
            from accelerate.utils import broadcast_object_list

            decision = [bool(should_stop()) if accelerator.is_main_process else False]
            broadcast_object_list(decision, from_process=0)
            return decision[0]

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = self.window_start = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self._stop_requested():
                self.cancelled = True
                control.should_training_stop = True
                on_log(f"stopping after step {state.global_step}: cancelled")

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
                   **kwargs: Any) -> None:
            if not logs or not state.is_world_process_zero or "train_runtime" in logs:
                return  # the train_runtime log is the summary: TrainResult.metrics has it
            now = time.monotonic()
            row: dict[str, Any] = {"step": state.global_step, "max_steps": state.max_steps,
                                   "epoch": finite(state.epoch)}
            row.update({k: finite(v) for k, v in logs.items()
                        if isinstance(v, int | float) and k != "total_flos"})
            tokens = logs.get("num_tokens")
            tokens_per_second = None
            if isinstance(tokens, int | float) and now > self.window_start:
                tokens_per_second = (tokens - self.window_tokens) / (now - self.window_start)
                self.window_tokens, self.window_start = tokens, now
            row["tokens_per_second"] = tokens_per_second
            done, total = state.global_step, state.max_steps
            row["elapsed_seconds"] = now - self.started
            row["eta_seconds"] = ((now - self.started) / done * max(total - done, 0)
                                  if done else None)
            on_metrics(row)
            shown = {k: row.get(k) for k in ("loss", "rewards/accuracies", "accuracy",
                                               "eval_loss") if row.get(k) is not None}
            on_log(f"step {done}/{total} " + " ".join(f"{k} {v:.4g}" for k, v in shown.items()))

    return _Progress()
