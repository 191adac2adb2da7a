"""Queries for users, login sessions and API tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import ApiToken, User, UserSession


def get_user(db: Session, *, user_id: int) -> User | None:
    return db.get(User, user_id)


def get_user_by_email(db: Session, *, email: str) -> User | None:
    return db.scalar(select(User).where(User.email == email.strip().lower()))


def list_users(db: Session) -> list[User]:
    return list(db.scalars(select(User).order_by(User.email)))



def get_session_with_user(db: Session, *, id_hash: str) -> tuple[UserSession, User] | None:
    row = db.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.id_hash == id_hash)
    ).first()
    return (row[0], row[1]) if row else None


def delete_session(db: Session, *, id_hash: str) -> None:
    db.execute(delete(UserSession).where(UserSession.id_hash == id_hash))


def delete_expired_sessions(db: Session, *, now: datetime) -> None:
    db.execute(delete(UserSession).where(UserSession.expires_at < now))


def get_token_by_hash(db: Session, *, token_hash: str) -> ApiToken | None:
    return db.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))


def list_tokens(db: Session, *, project_id: int) -> list[ApiToken]:
    return list(
        db.scalars(
            select(ApiToken).where(ApiToken.project_id == project_id).order_by(ApiToken.id.desc())
        )
    )
