"""Queries for users, login sessions and API tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, func, select, text
from sqlalchemy.orm import Session

from app.core.db import ONE_ROW
from app.models import ApiToken, LoginFailure, User, UserSession
from app.projects import repository as projects


def get_user(db: Session, *, user_id: int) -> User | None:
    return db.get(User, user_id)


def get_user_by_email(db: Session, *, email: str) -> User | None:
    return db.scalar(select(User).where(User.email == email.strip().lower()))


def list_users(db: Session) -> list[User]:
    return list(db.scalars(select(User).order_by(User.email)))


_SESSION_WITH_USER = (select(UserSession, User).join(User, User.id == UserSession.user_id)
                      .where(UserSession.id_hash == bindparam("id_hash")))  # built once


# The same, and the project a request is about with the user's role in it: a project page's
# login and authorization in one round trip (app.projects.policies.authorize then reads them
# from the transaction's memo).
_SESSION_WITH_USER_AND_PROJECT = projects.with_project_and_role(_SESSION_WITH_USER,
                                                                user_id=User.id)


def get_session_with_user(db: Session, *, id_hash: str,
                          project_id: int | None = None) -> tuple[UserSession, User] | None:
    """The login session and its user; given ``project_id``, the project and the user's role
    in it are read in the same query, for the request's authorization."""
    if project_id is None:
        row = db.execute(_SESSION_WITH_USER, {"id_hash": id_hash}).first()
        return (row[0], row[1]) if row else None
    row = db.execute(_SESSION_WITH_USER_AND_PROJECT,
                     {"id_hash": id_hash, "project_id": project_id}).first()
    if row is None:
        return None
    session, user, project, role = row
    projects.remember_project_and_role(db, project_id=project_id, user_id=user.id,
                                       project=project, role=role)
    return session, user


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


def lock_login(db: Session, *, email: str) -> None:
    """Serialise logins to one account until the transaction ends (PostgreSQL; SQLite's
    writers are serialised already), so parallel guesses cannot all pass the count."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                    {"key": "tandem-login:" + email})


def _failures(*, since: datetime, email: str | None, ip: str | None):  # noqa: ANN202
    query = select(LoginFailure.created_at).where(LoginFailure.created_at >= since)
    if email is not None:
        query = query.where(LoginFailure.email == email)
    if ip is not None:
        query = query.where(LoginFailure.ip == ip)
    return query


def count_login_failures(db: Session, *, since: datetime, email: str | None = None,
                         ip: str | None = None) -> int:
    query = _failures(since=since, email=email, ip=ip).subquery()
    return db.scalar(select(func.count()).select_from(query)) or 0


def login_failure_time(db: Session, *, since: datetime, offset: int, email: str | None = None,
                       ip: str | None = None) -> datetime | None:
    """The time of the ``offset``-th failure (oldest first) since ``since``."""
    query = _failures(since=since, email=email, ip=ip)
    return db.scalar(query.order_by(LoginFailure.created_at).offset(offset).limit(ONE_ROW))


def add_login_failure(db: Session, *, email: str, ip: str, at: datetime) -> None:
    db.add(LoginFailure(email=email, ip=ip, created_at=at))


def delete_login_failures(db: Session, *, email: str) -> None:
    db.execute(delete(LoginFailure).where(LoginFailure.email == email))


def delete_login_failures_before(db: Session, *, cutoff: datetime) -> None:
    db.execute(delete(LoginFailure).where(LoginFailure.created_at < cutoff))
