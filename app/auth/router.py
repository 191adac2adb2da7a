"""Log in and out."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.auth import service
from app.auth.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    DbSession,
    check_login_csrf,
    client_ip,
    optional_user,
    require_user,
    signer,
)
from app.core.config import get_settings
from app.core.errors import Unauthorized
from app.core.security import new_token
from app.core.templating import render
from app.models import User

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only same-site paths: a login link must not bounce users to another site."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/projects"


def _login_page(request: Request, *, next_url: str, error: str | None = None,
                status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    token = new_token(24)
    response = render(request, "auth/login.html",
                      {"login_csrf": token, "next_url": next_url, "error": error},
                      status_code=status_code, headers=headers)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                        secure=get_settings().cookie_secure, path="/login")
    return response


@router.get("/")
def home(user: User | None = Depends(optional_user)) -> Response:
    return RedirectResponse("/projects" if user else "/login", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:  # noqa: A002
    return _login_page(request, next_url=_safe_next(next))


@router.post("/login", dependencies=[Depends(check_login_csrf)])
def login(request: Request, email: str = Form(...), password: str = Form(...),
          next_url: str = Form("/projects"), db: Session = DbSession) -> Response:
    try:
        user = service.login(db, email=email, password=password, ip=client_ip(request))
    except service.LoginThrottled as exc:
        return _login_page(request, next_url=_safe_next(next_url), error=exc.message,
                           status_code=429, headers={"Retry-After": str(exc.retry_after_s)})
    except Unauthorized as exc:
        # The failure was counted: returning (not raising) lets the request commit it.
        return _login_page(request, next_url=_safe_next(next_url), error=exc.message,
                           status_code=401)
    settings = get_settings()
    old = request.cookies.get(SESSION_COOKIE)
    if old and (old_id := signer().unsign(old)):
        service.end_session(db, session_id=old_id)
    new = service.start_session(db, user=user, max_age_s=settings.session_max_age_s)
    response = RedirectResponse(_safe_next(next_url), status_code=303)
    response.set_cookie(SESSION_COOKIE, signer().sign(new.session_id), httponly=True,
                        samesite="lax", secure=settings.cookie_secure,
                        max_age=settings.session_max_age_s)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, user: User = Depends(require_user),
           db: Session = DbSession) -> Response:
    # Imported here: auth sits below labeling, and this is its one use of it.
    from app.labeling.service import release_leases

    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and (session_id := signer().unsign(cookie)):
        service.end_session(db, session_id=session_id)
    # A labeler who left must not keep their item blocked until the lease runs out.
    release_leases(db, user_id=user.id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
