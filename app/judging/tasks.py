"""Celery tasks of the judging domain: they take ids and are idempotent."""

from __future__ import annotations

from app.core.celery import get_celery
from app.core.config import get_settings
from app.judging import work
from app.judging.providers.base import TransientError

celery = get_celery()


@celery.task(name="judging.dispatch")
def dispatch(run_id: int) -> None:
    """Queue the run's unfinished items in batches."""
    for batch in work.dispatch(run_id=run_id):
        judge_batch.delay(run_id, batch)


@celery.task(name="judging.recover")
def recover() -> None:
    """Queue again the items whose worker died while judging them, and those of runs whose
    queued batches were lost with the broker's data."""
    for run_id, item_ids in work.recover_stale() + work.recover_stalled():
        for start in range(0, len(item_ids), work.DISPATCH_CHUNK):
            judge_batch.delay(run_id, item_ids[start : start + work.DISPATCH_CHUNK])


@celery.task(name="judging.preview")
def preview(preview_id: int) -> None:
    """Ask the judge about one item with a draft configuration."""
    work.run_preview(preview_id=preview_id)


@celery.task(name="judging.judge_batch", bind=True, max_retries=None)
def judge_batch(self, run_id: int, item_ids: list[int]) -> None:  # noqa: ANN001
    """Judge a batch; transient endpoint errors are retried with backoff (or Retry-After),
    then the items are marked failed with the last reason, so a run never hangs."""
    settings = get_settings()
    try:
        work.judge_batch(run_id=run_id, item_ids=item_ids)
    except TransientError as exc:
        if self.request.retries >= settings.judge_max_retries:
            work.fail_batch(run_id=run_id, item_ids=item_ids,
                               reason=f"gave up after {self.request.retries + 1} tries: {exc}")
            return
        backoff = settings.judge_retry_base_s * 2 ** self.request.retries
        countdown = exc.retry_after if exc.retry_after is not None else min(60.0, backoff)
        raise self.retry(countdown=countdown, exc=exc) from None
