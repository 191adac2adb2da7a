"""Request dependencies: the database session, the logged-in user, CSRF, API tokens."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.auth import service
from app.core.config import get_settings
from app.core.db import new_session
from app.core.errors import DomainError, Forbidden, Unauthorized
from app.core.security import CookieSigner
from app.models import ApiToken, User

SESSION_COOKIE = "tandem_session"
LOGIN_CSRF_COOKIE = "tandem_login_csrf"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class UserView:
    id: int
    name: str
    email: str
    is_admin: bool


class LoginRequired(DomainError):
    status_code = 401


async def get_db(request: Request) -> AsyncIterator[Session]:
    """One transaction per request: committed before the response is sent, else rolled back.

    A POST, PUT, PATCH or DELETE is a writer from its first statement on (on SQLite: BEGIN
    IMMEDIATE), so two writers queue rather than failing halfway. Making the session costs
    no I/O (it connects at its first statement, in the route's thread), so this runs on the
    event loop: a thread-pool hop less per request. The commit, which does I/O, goes to the
    thread pool, and only when the request opened a transaction.
    """
    session = new_session(write=request.method in UNSAFE_METHODS)
    try:
        yield session
        if session.in_transaction():
            await run_in_threadpool(session.commit)
    except BaseException:
        session.rollback()  # also on cancellation: no await here
        raise
    finally:
        session.close()


# The session is committed when the route returns, before the response is sent (FastAPI's
# default "request" scope would commit after sending: a failed commit would look like success,
# and the browser's next request could miss the row). Every dependency must use this one.
DbSession = Depends(get_db, scope="function")


def client_ip(request: Request) -> str:
    """The client's address. Behind a reverse proxy the server (uvicorn, told by
    ``trusted_proxies``) has already taken it from X-Forwarded-For; from any other peer
    that header is ignored, so a client cannot pick its own address."""
    return request.client.host if request.client else "unknown"


def signer() -> CookieSigner:
    return _signer(get_settings().resolved_secret_key())


@lru_cache(maxsize=4)
def _signer(secret_key: str) -> CookieSigner:
    return CookieSigner(secret_key)


def optional_user(request: Request, db: Session = DbSession) -> User | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    request.state.user = None
    request.state.csrf_token = ""
    if not cookie:
        return None
    session_id = signer().unsign(cookie)
    if session_id is None:
        return None
    # On a project's page the same query reads the project and the user's role in it, which
    # the route's authorize() then takes from the transaction: one round trip less.
    found = service.resolve_session(db, session_id=session_id,
                                    project_id=_path_project_id(request))
    if found is None:
        return None
    user, row = found
    # Templates get a plain copy: an error page renders after the session is rolled back.
    request.state.user = UserView(id=user.id, name=user.name, email=user.email,
                                  is_admin=user.is_admin)
    request.state.csrf_token = row.csrf_token
    return user


def _path_project_id(request: Request) -> int | None:
    value = request.path_params.get("project_id")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None  # the route's own validation answers it


def _csrf_in(request: Request, form: FormData | None) -> str:
    """The CSRF token the request carries: its X-CSRF-Token header, else the form's field."""
    token = request.headers.get("X-CSRF-Token", "")
    if token or form is None:
        return token
    value = form.get("csrf_token", "")
    return value if isinstance(value, str) else ""


async def _submitted_csrf(request: Request) -> str:
    form = None
    content_type = request.headers.get("content-type", "")
    if not request.headers.get("X-CSRF-Token") and content_type.startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
    return _csrf_in(request, form)


async def form_data(request: Request) -> FormData:
    """The request's form, read on the event loop, so the route itself can be a plain ``def``
    that runs in the thread pool: database work never blocks the loop."""
    return await request.form()


# For routes that read their own form fields: ``form: FormData = FormBody``.
FormBody = Depends(form_data)


def _check_csrf(request: Request, submitted: str) -> None:
    if not submitted or not hmac.compare_digest(submitted, request.state.csrf_token):
        raise Forbidden("The form has expired or did not come from Tandem (CSRF check). "
                        "Reload the page and try again.")


async def require_user(request: Request, user: User | None = Depends(optional_user)) -> User:
    """The logged-in user; a state-changing request must also carry the session's CSRF token."""
    if user is None:
        raise LoginRequired("Please log in.")
    if request.method in UNSAFE_METHODS:
        _check_csrf(request, await _submitted_csrf(request))
    return user


def user_posting_form(request: Request, db: Session, form: FormData) -> User:
    """``require_user`` for a form post, called inside a plain ``def`` route with the form it
    already has (``FormBody``): the session is looked up in the route's own thread.

    As a dependency, the lookup takes a thread-pool hop of its own; the labeling routes,
    which every labeler calls for every item, save that hop this way.
    """
    user = optional_user(request, db)
    if user is None:
        raise LoginRequired("Please log in.")
    _check_csrf(request, _csrf_in(request, form))
    return user


async def check_login_csrf(request: Request) -> None:
    """Login happens before there is a session: a double-submit cookie guards its form."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    submitted = await _submitted_csrf(request)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        raise Forbidden("The login form has expired. Reload the page and try again.")


@dataclass(frozen=True)
class ApiPrincipal:
    user: User
    token: ApiToken | None

    def check(self, *, project_id: int, scope: str) -> None:
        """A token works only on its own project and for the verbs it was given."""
        if self.token is None:
            return
        if self.token.project_id != project_id:
            raise Forbidden("This API token is not valid for this project.")
        if scope not in self.token.scopes:
            raise Forbidden(f"This API token lacks the '{scope}' scope.")


def api_principal(request: Request, db: Session = DbSession) -> ApiPrincipal:
    """Bearer token for API clients; a browser session (with CSRF header) works too."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        found = service.resolve_api_token(db, secret=header[7:].strip())
        if found is None:
            raise Unauthorized("Invalid or revoked API token.")
        user, token = found
        return ApiPrincipal(user=user, token=token)
    user = optional_user(request, db)
    if user is None:
        raise Unauthorized("Send an API token: 'Authorization: Bearer tdm_...'.")
    if request.method in UNSAFE_METHODS:
        submitted = request.headers.get("X-CSRF-Token", "")
        if not hmac.compare_digest(submitted, request.state.csrf_token):
            raise Forbidden("Missing CSRF header for a session-authenticated API call.")
    return ApiPrincipal(user=user, token=None)
