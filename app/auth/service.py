"""Accounts, logins and API tokens."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy.orm import Session

from app.auth import repository
from app.core.config import get_settings
from app.core.errors import BadRequest, Conflict, DomainError, NotFound, Unauthorized
from app.core.security import hash_password, new_token, sha256_hex, verify_password
from app.models import ApiToken, User, UserSession
from app.models.types import utcnow

# "worker" is the training worker's per-attempt token: it may only claim, report and finish
# its own run and download that run's snapshot (app.training).
API_SCOPES = ("import", "export", "read", "judge", "train", "worker")
TOKEN_PREFIX = "tdm_"

log = logging.getLogger("tandem.auth")


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verifying against a real hash for unknown emails keeps login timing uniform."""
    return hash_password("not-a-real-password")


def create_user(db: Session, *, email: str, name: str, password: str,
                is_admin: bool = False) -> User:
    """Create an account; the email is the login and must be new."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise BadRequest("Enter a valid email address.")
    if len(password) < 8:
        raise BadRequest("A password needs at least 8 characters.")
    if repository.get_user_by_email(db, email=email):
        raise Conflict(f"A user with the email {email} exists already.")
    user = User(email=email, name=name.strip() or email, password_hash=hash_password(password),
                is_admin=is_admin)
    db.add(user)
    db.flush()
    return user


def authenticate(db: Session, *, email: str, password: str) -> User:
    """Return the active user with this email and password, or raise Unauthorized."""
    user = repository.get_user_by_email(db, email=email)
    if user is None or not user.is_active:
        verify_password(_dummy_hash(), password)
        raise Unauthorized("Wrong email or password.")
    if not verify_password(user.password_hash, password):
        raise Unauthorized("Wrong email or password.")
    return user


class LoginThrottled(DomainError):
    """Too many failed logins lately for this account or this address."""

    status_code = 429

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _retry_after(db: Session, *, now: datetime, since: datetime, window_s: int, limit: int,
                 email: str | None = None, ip: str | None = None) -> int | None:
    """Seconds until fewer than ``limit`` failures remain in the window; None when fewer
    already do."""
    n = repository.count_login_failures(db, since=since, email=email, ip=ip)
    if n < limit:
        return None
    # The window slides: logins reopen when the (n - limit + 1) oldest failures have aged out.
    oldest = repository.login_failure_time(db, since=since, offset=n - limit, email=email,
                                           ip=ip)
    if oldest is None:  # pruned in between by another request: nothing left to wait for
        return None
    return max(1, math.ceil((oldest + timedelta(seconds=window_s) - now).total_seconds()))


def check_login_allowed(db: Session, *, email: str, ip: str) -> None:
    """Raise LoginThrottled when this account or this address failed too often within the
    window. Two indexed counts and no password hashing: a refusal costs the server little."""
    settings = get_settings()
    now = utcnow()
    since = now - timedelta(seconds=settings.login_window_s)
    waits = [
        _retry_after(db, now=now, since=since, window_s=settings.login_window_s,
                     limit=settings.login_max_failures, email=email),
        _retry_after(db, now=now, since=since, window_s=settings.login_window_s,
                     limit=settings.login_max_failures_per_ip, ip=ip),
    ]
    wait = max((w for w in waits if w is not None), default=None)
    if wait is not None:
        log.warning("login refused for %s from %s: too many failed attempts", email, ip)
        minutes = math.ceil(wait / 60)
        raise LoginThrottled(
            "Too many failed logins. Wait "
            + (f"{minutes} minute{'s' if minutes > 1 else ''}" if wait >= 60 else f"{wait} s")
            + " before you try again.", retry_after_s=wait)


def login(db: Session, *, email: str, password: str, ip: str) -> User:
    """Authenticate within the failed-login limits: a failure is counted (and old ones
    pruned), a success clears the account's count. Raises LoginThrottled or Unauthorized."""
    email = email.strip().lower()[:320]
    ip = ip[:64]
    repository.lock_login(db, email=email)
    check_login_allowed(db, email=email, ip=ip)
    try:
        user = authenticate(db, email=email, password=password)
    except Unauthorized:
        now = utcnow()
        repository.delete_login_failures_before(
            db, cutoff=now - timedelta(seconds=get_settings().login_window_s))
        repository.add_login_failure(db, email=email, ip=ip, at=now)
        db.flush()
        log.warning("failed login for %s from %s", email, ip)
        raise
    repository.delete_login_failures(db, email=email)
    return user


@dataclass(frozen=True)
class NewSession:
    session_id: str
    csrf_token: str


def start_session(db: Session, *, user: User, max_age_s: int) -> NewSession:
    """A fresh session id at every login, so a planted id never becomes a logged-in one."""
    now = utcnow()
    repository.delete_expired_sessions(db, now=now)
    session_id = new_token()
    csrf = new_token(24)
    db.add(UserSession(id_hash=sha256_hex(session_id), user_id=user.id, csrf_token=csrf,
                       created_at=now, expires_at=now + timedelta(seconds=max_age_s)))
    db.flush()
    return NewSession(session_id=session_id, csrf_token=csrf)


def resolve_session(db: Session, *, session_id: str,
                    project_id: int | None = None) -> tuple[User, UserSession] | None:
    """The session's user and session row, if it is live; given ``project_id``, the query
    also reads that project for the request's authorization (same round trip)."""
    found = repository.get_session_with_user(db, id_hash=sha256_hex(session_id),
                                             project_id=project_id)
    if found is None:
        return None
    row, user = found
    if row.expires_at < utcnow() or not user.is_active:
        return None
    return user, row


def end_session(db: Session, *, session_id: str) -> None:
    repository.delete_session(db, id_hash=sha256_hex(session_id))


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, never stored


def create_api_token(db: Session, *, user: User, project_id: int, name: str,
                     scopes: list[str]) -> IssuedToken:
    """Issue a project-scoped token; only its hash is stored."""
    bad = [s for s in scopes if s not in API_SCOPES]
    if bad or not scopes:
        raise BadRequest(f"Scopes must be some of {', '.join(API_SCOPES)}.")
    secret = TOKEN_PREFIX + new_token()
    token = ApiToken(user_id=user.id, project_id=project_id, name=name.strip() or "token",
                     token_hash=sha256_hex(secret), prefix=secret[:10], scopes=sorted(set(scopes)))
    db.add(token)
    db.flush()
    return IssuedToken(token=token, secret=secret)


def revoke_api_token(db: Session, *, project_id: int, token_id: int) -> ApiToken:
    token = db.get(ApiToken, token_id)
    if token is None or token.project_id != project_id:
        raise NotFound("No such token.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    db.flush()
    return token


def resolve_api_token(db: Session, *, secret: str) -> tuple[User, ApiToken] | None:
    token = repository.get_token_by_hash(db, token_hash=sha256_hex(secret))
    if token is None or token.revoked_at is not None:
        return None
    user = repository.get_user(db, user_id=token.user_id)
    if user is None or not user.is_active:
        return None
    return user, token
