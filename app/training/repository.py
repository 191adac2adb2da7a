"""Queries for training runs, their metrics and checkpoints."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.db import ONE_ROW
from app.models import ModelCheckpoint, TrainingMetric, TrainingRun
from app.models.training import TrainingStatus


def list_runs(db: Session, *, project_id: int, limit: int = 50) -> list[TrainingRun]:
    return list(db.scalars(select(TrainingRun).where(TrainingRun.project_id == project_id)
                           .order_by(TrainingRun.id.desc()).limit(limit)))


def get_run(db: Session, *, run_id: int, lock: bool = False) -> TrainingRun | None:
    query = select(TrainingRun).where(TrainingRun.id == run_id)
    if lock:
        query = query.with_for_update(key_share=True)
    return db.scalar(query)


def run_of_token(db: Session, *, token_id: int) -> TrainingRun | None:
    return db.scalar(select(TrainingRun).where(TrainingRun.api_token_id == token_id))


def metrics(db: Session, *, run_id: int, attempt: int, limit: int = 5000) -> list[TrainingMetric]:
    return list(db.scalars(select(TrainingMetric).where(
        TrainingMetric.run_id == run_id, TrainingMetric.attempt == attempt)
        .order_by(TrainingMetric.step, TrainingMetric.id).limit(limit)))


def checkpoints(db: Session, *, project_id: int) -> list[ModelCheckpoint]:
    return list(db.scalars(select(ModelCheckpoint).where(
        ModelCheckpoint.project_id == project_id).order_by(ModelCheckpoint.id.desc())))


def checkpoint_of_run(db: Session, *, run_id: int) -> ModelCheckpoint | None:
    return db.scalar(select(ModelCheckpoint).where(ModelCheckpoint.run_id == run_id)
                     .order_by(ModelCheckpoint.id.desc()).limit(ONE_ROW))


def stale_running(db: Session, *, before: datetime) -> list[TrainingRun]:
    return list(db.scalars(select(TrainingRun).where(
        TrainingRun.status == TrainingStatus.RUNNING, TrainingRun.heartbeat_at < before)
        .with_for_update(skip_locked=True)))


def fail(db: Session, *, run_id: int, attempt: int, error: str, now: datetime) -> int:
    """Mark one attempt failed unless it finished meanwhile; returns rows changed."""
    return db.execute(update(TrainingRun).where(
        TrainingRun.id == run_id, TrainingRun.attempt == attempt,
        TrainingRun.status.in_([TrainingStatus.QUEUED, TrainingStatus.RUNNING]))
        .values(status=TrainingStatus.FAILED, error=error, finished_at=now)).rowcount
