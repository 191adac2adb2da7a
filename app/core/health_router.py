"""Liveness and readiness for load balancers and orchestrators; no login, no CSRF.

``/healthz`` answers while the process can serve at all (restart it when this fails);
``/readyz`` checks the database and the broker, and answers 503 naming what is down (send
it no traffic until this passes; restarting the server would not help).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.core.health import readiness

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    # async: it answers on the event loop even while every pool thread waits on a database.
    return {"status": "ok"}


@router.get("/readyz")
def readyz() -> JSONResponse:
    ready, checks = readiness()
    return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503,
                        headers={"Cache-Control": "no-store"})
