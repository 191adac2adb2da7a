"""Settings: the one place that reads the environment (prefix ``TANDEM_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_", env_file=None, extra="ignore")

    data_dir: Path = ROOT / "data"
    database_url: str = ""
    broker_url: str = ""
    # Prefix for every broker key, so several deployments (or test runs) can share one Redis.
    broker_key_prefix: str = ""
    secret_key: str = ""
    base_url: str = "http://127.0.0.1:8000"
    session_max_age_s: int = 14 * 24 * 3600
    cookie_secure: bool = False
    lease_minutes: float = 30.0
    # Imports above this many items run as a Celery job with a progress bar.
    import_sync_limit: int = 2000
    # Dashboards of projects above this many items serve a recount up to this old
    # (app.labeling.progress_cache) instead of counting on every view.
    progress_recount_above_items: int = 20_000
    progress_recount_every_s: float = 10.0
    # Request bodies: imports may be this large, the training worker's reports this large,
    # everything else this large; app.core.limits refuses more before reading it whole.
    max_upload_bytes: int = 200 * 1024 * 1024
    max_worker_report_bytes: int = 16 * 1024 * 1024
    max_body_bytes: int = 1024 * 1024
    # Failed logins counted per account and per client address within the window (rows in
    # the database, so every web process sees the same counts).
    login_max_failures: int = 5
    login_max_failures_per_ip: int = 50
    login_window_s: int = 15 * 60
    # Web server processes for `tandem serve` (its --workers overrides). One process runs
    # Python on one core at a time: with PostgreSQL, run one per core (docker-compose.yml
    # does); the embedded SQLite default needs one.
    web_workers: int = 1
    # Peers whose X-Forwarded-For names the client (a reverse proxy), comma separated.
    trusted_proxies: str = "127.0.0.1"
    max_line_bytes: int = 1024 * 1024
    max_response_chars: int = 100_000
    max_responses: int = 8
    # A task a dead worker held is handed out again after this long (Redis broker), and
    # judge items it had claimed may be claimed again once they are this old.
    broker_visibility_timeout_s: int = 900
    judge_claim_stale_s: int = 600
    # Judge calls that fail transiently are retried this often, backing off from this base.
    judge_max_retries: int = 5
    judge_retry_base_s: float = 1.0
    # Converted judge models (e.g. the SmolLM2 GGUF de-quantised once) are kept here.
    model_cache_dir: Path = ROOT / ".cache" / "models"
    # Training workers save checkpoints here (a shared disk or mount when they run on other
    # machines than the judge workers that load them); they talk to the server at base_url.
    artifacts_dir: Path | None = None
    # A snapshot build or generation run whose task copy has not reported for this long may
    # be taken over by a redelivered copy (longer than the broker's visibility timeout).
    job_claim_stale_s: float = 1200.0
    # A job still queued this long is sent to the broker again by the workers' watchdog
    # (its message was lost with a Redis restart, or the broker was down when it was made).
    job_resend_after_s: float = 300.0
    training_heartbeat_s: float = 10.0
    # A running training run whose worker sent nothing for this long is marked failed.
    training_heartbeat_timeout_s: float = 120.0

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'tandem.sqlite3'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def resolved_artifacts_dir(self) -> Path:
        return self.artifacts_dir or self.data_dir / "artifacts"

    @property
    def broker_folder(self) -> Path:
        return self.data_dir / "broker"

    def resolved_secret_key(self) -> str:
        """The signing key; generated once into the data folder when none is configured."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if not path.exists():
            import os
            import secrets

            # Several web processes may start at once on one data folder: the key is written
            # whole and private to a file of its own, then linked into place, which only the
            # first process manages; the others read the winner's key.
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
