"""Accounts, logins and API tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from sqlalchemy.orm import Session

from app.auth import repository
from app.core.errors import BadRequest, Conflict, NotFound, Unauthorized
from app.core.security import hash_password, new_token, sha256_hex, verify_password
from app.models import ApiToken, User, UserSession
from app.models.types import utcnow

# "worker" is the training worker's per-attempt token: it may only claim, report and finish
# its own run and download that run's snapshot (app.training).
API_SCOPES = ("import", "export", "read", "judge", "train", "worker")
TOKEN_PREFIX = "tdm_"


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


def resolve_session(db: Session, *, session_id: str) -> tuple[User, UserSession] | None:
    found = repository.get_session_with_user(db, id_hash=sha256_hex(session_id))
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
