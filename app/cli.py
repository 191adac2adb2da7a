"""The ``tandem`` command: run the server and workers, migrate, manage users, import, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from app.core.config import ROOT, get_settings


@click.group()
def main() -> None:
    """Tandem: human and AI feedback on LLM responses."""


@main.command()
def migrate() -> None:
    """Apply the database migrations (creates the SQLite file when needed)."""
    from app.core.migrate import upgrade

    get_settings().data_dir.mkdir(parents=True, exist_ok=True)
    upgrade()
    click.echo("database is at the latest schema")


@main.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup_cmd(path: Path) -> None:
    """Back up the database to one file, safely while the server runs (SQLite: the online
    backup API; PostgreSQL: pg_dump -Fc)."""
    from app.core.backup import BackupError, backup

    try:
        written = backup(get_settings().resolved_database_url, path)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"backed up to {written} ({written.stat().st_size} bytes)")


@main.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="overwrite a database that already has tables")
def restore_cmd(path: Path, force: bool) -> None:
    """Restore a backup into the database (stop the server and workers first), then
    migrate it to the latest schema."""
    from app.core.backup import BackupError, restore

    try:
        restore(get_settings().resolved_database_url, path, force=force)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored {path}; database is at the latest schema")


def _create_user(email: str, name: str, password: str, admin: bool) -> None:
    from app.auth.service import create_user
    from app.core.db import session_scope
    from app.core.errors import DomainError

    try:
        with session_scope(write=True) as db:
            create_user(db, email=email, name=name, password=password, is_admin=admin)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"created {'site admin' if admin else 'user'} {email}")


@main.command("create-admin")
@click.option("--email", prompt=True)
@click.option("--name", prompt=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def create_admin(email: str, name: str, password: str) -> None:
    """Create a site admin, who can create projects."""
    _create_user(email, name, password, admin=True)


@main.command("create-user")
@click.option("--email", prompt=True)
@click.option("--name", prompt=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def create_user_cmd(email: str, name: str, password: str) -> None:
    """Create a user (add them to projects as labeler, reviewer or admin)."""
    _create_user(email, name, password, admin=False)


@main.command()
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=8000, type=int)
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="web server processes (default: TANDEM_WEB_WORKERS, else 1); with "
                   "PostgreSQL, one per core")
def serve(host: str, port: int, workers: int | None) -> None:
    """Run the web server."""
    import uvicorn

    # X-Forwarded-For is believed only from the proxies in trusted_proxies (see client_ip).
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port,
                workers=workers or get_settings().web_workers,
                proxy_headers=True, forwarded_allow_ips=get_settings().trusted_proxies,
                log_level="info", timeout_graceful_shutdown=20)


def _worker_argv(queues: str, concurrency: int, pool: str | None) -> list[str]:
    # A training worker (queue "train" alone) needs no database: it has its own entry point.
    entry = "worker.training.main" if queues == "train" else "worker.main"
    argv = [sys.executable, "-m", "celery", "-A", entry, "worker", "-Q", queues,
            "--concurrency", str(concurrency), "--loglevel", "INFO"]
    if pool:
        argv += ["--pool", pool]
    return argv


@main.command()
@click.option("--queues", default="import,export,judge,generate")
@click.option("--concurrency", default=1, type=int)
@click.option("--pool", default=None, help="prefork (default), solo or threads")
def worker(queues: str, concurrency: int, pool: str | None) -> None:
    """Run a Celery worker. `--queues train` runs a training worker (GPU machines): it
    reaches the server only through TANDEM_BASE_URL and saves to TANDEM_ARTIFACTS_DIR."""
    os.execv(sys.executable, _worker_argv(queues, concurrency, pool))


@main.command("import")
@click.argument("project_id", type=int)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "file_format", type=click.Choice(["jsonl", "csv"]), default=None)
def import_cmd(project_id: int, path: Path, file_format: str | None) -> None:
    """Import a JSONL or CSV file into a project (all of it, or nothing if a line is bad)."""
    from app.core.db import session_scope
    from app.core.errors import DomainError
    from app.items.parsing import RecordError, detect_format
    from app.items.service import import_file
    from app.projects.repository import get_project

    try:
        fmt = detect_format(path.name, file_format)
    except RecordError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        with session_scope(write=True) as db:
            project = get_project(db, project_id=project_id)
            if project is None:
                raise click.ClickException(f"no project {project_id}")
            report = import_file(db, project=project, user=None, data=path.read_bytes(),
                                 filename=path.name, file_format=fmt)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    if not report.ok:
        for e in report.errors:
            click.echo(f"{path}:{e.line}: {e.message}", err=True)
        raise click.ClickException(f"{report.error_count} bad lines; nothing was imported")
    if report.job_id is not None:
        click.echo(f"large file: import job {report.job_id} queued; a worker will run it")
    else:
        click.echo(f"imported {report.created} new items; {report.unchanged} already present")


@main.command("export")
@click.argument("project_id", type=int)
@click.option("--format", "fmt", default="standard",
              type=click.Choice(["standard", "conversational", "kto", "kto_conversational",
                                 "sft", "openai", "tandem"]))
@click.option("--container", default="jsonl", type=click.Choice(["jsonl", "parquet"]))
@click.option("--source", default="all", help="all, or a comma list: human, ai_accepted, "
              "ai_reviewed, adjudicated, gold")
@click.option("--min-agreement", type=float, default=None)
@click.option("--min-confidence", type=float, default=None)
@click.option("--tag", default=None)
@click.option("--test-fraction", type=float, default=None, help="a seeded split by prompt")
@click.option("--seed", type=int, default=0)
@click.option("--no-margin", is_flag=True, help="leave the margin column out")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="also copy the snapshot's files into this folder")
def export_cmd(project_id: int, fmt: str, container: str, source: str,
               min_agreement: float | None, min_confidence: float | None, tag: str | None,
               test_fraction: float | None, seed: int, no_margin: bool,
               output: Path | None) -> None:
    """Make an export snapshot now (in this process) and print its manifest's summary."""
    import shutil

    from pydantic import ValidationError

    from app.core.db import session_scope
    from app.exports import snapshots
    from app.exports.filters import ExportFilters, parse_sources
    from app.exports.schemas import SnapshotIn, SplitIn
    from app.models import ExportSnapshot, Project

    try:
        spec = SnapshotIn(
            format=fmt, container=container, margin=not no_margin,
            filters=ExportFilters(sources=sorted(parse_sources(source)),
                                  min_agreement=min_agreement, min_confidence=min_confidence,
                                  tag=tag),
            split=SplitIn(test_fraction=test_fraction, seed=seed) if test_fraction else None)
    except (ValidationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    with session_scope(write=True) as db:
        project = db.get(Project, project_id)
        if project is None:
            raise click.ClickException(f"no project {project_id}")
        snapshot_id = snapshots.create_snapshot(db, project=project, user=None, spec=spec,
                                                enqueue=False).id
    snapshots.build_snapshot(snapshot_id=snapshot_id)
    with session_scope() as db:
        snap = db.get(ExportSnapshot, snapshot_id)
        folder = snapshots.snapshots_root() / (snap.path or "")
        summary = {"snapshot": snap.id, "version": snap.version, "status": snap.status,
                   "rows": snap.rows, "sha256": snap.sha256, "folder": str(folder),
                   "counts": (snap.manifest or {}).get("counts")}
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        for f in folder.iterdir():
            if not f.name.startswith("rows."):
                shutil.copyfile(f, output / f.name)
        summary["output"] = str(output)
    click.echo(json.dumps(summary))


@main.command("train")
@click.argument("snapshot_id", type=int)
@click.option("--method", type=click.Choice(["dpo", "reward"]), default="dpo")
@click.option("--base-model", default="smollm2",
              help="a folder, a hub name, checkpoint:N, or smollm2 (the default)")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="a hyperparameter, e.g. --set learning_rate=1e-5 --set max_steps=200")
@click.option("--email", default=None, help="who starts it (default: the first site admin)")
def train_cmd(snapshot_id: int, method: str, base_model: str, settings: tuple[str, ...],
              email: str | None) -> None:
    """Queue a training run on a snapshot for a training worker (`tandem worker --queues
    train`)."""
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.core.errors import DomainError
    from app.models import ExportSnapshot, Project, User
    from app.training.schemas import TrainingRunIn
    from app.training.service import start_run

    hyper: dict = {}
    for item in settings:
        key, _, raw = item.partition("=")
        try:
            hyper[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            hyper[key.strip()] = raw
    try:
        with session_scope(write=True) as db:
            snapshot = db.get(ExportSnapshot, snapshot_id)
            if snapshot is None:
                raise click.ClickException(f"no snapshot {snapshot_id}")
            query = select(User).where(User.is_admin).order_by(User.id)
            if email:
                query = select(User).where(User.email == email.strip().lower())
            user = db.scalar(query)
            if user is None:
                raise click.ClickException("no such user (create an admin first)")
            run = start_run(db, project=db.get(Project, snapshot.project_id), user=user,
                            data=TrainingRunIn(snapshot_id=snapshot_id, method=method,
                                               base_model=base_model, hyperparameters=hyper))
            run_id = run.id
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(json.dumps({"training_run": run_id, "status": "queued"}))


@main.command("create-token")
@click.argument("project_id", type=int)
@click.option("--email", required=True, help="the user the token acts as")
@click.option("--name", default="cli")
@click.option("--scopes", default="export,read")
def create_token(project_id: int, email: str, name: str, scopes: str) -> None:
    """Issue a project-scoped API token and print it once."""
    from app.auth import repository
    from app.auth.service import create_api_token
    from app.core.db import session_scope

    with session_scope(write=True) as db:
        user = repository.get_user_by_email(db, email=email)
        if user is None:
            raise click.ClickException(f"no user {email}")
        issued = create_api_token(db, user=user, project_id=project_id, name=name,
                                  scopes=[s.strip() for s in scopes.split(",") if s.strip()])
    click.echo(issued.secret)


@main.command()
def demo() -> None:
    """Create the demo project and logins (once)."""
    from app.core.db import session_scope
    from app.demo.seed import seed_demo

    with session_scope(write=True) as db:
        seeded = seed_demo(db)
    click.echo(f"demo project {seeded.project_id} {'created' if seeded.created else 'present'}")


@main.command()
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=8000, type=int)
@click.pass_context
def dev(ctx: click.Context, host: str, port: int) -> None:
    """Migrate, seed the demo, then run the web server, a worker and a training worker
    until Ctrl-C."""
    from app.demo.seed import ADMIN, LABELERS

    settings = get_settings()
    ctx.invoke(migrate)
    ctx.invoke(demo)
    env = dict(os.environ, TANDEM_DATA_DIR=str(settings.data_dir))
    procs = [
        subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--host", host,
                          "--port", str(port)], cwd=ROOT, env=env),
        subprocess.Popen(_worker_argv("import,export,judge,generate", 1, "solo"), cwd=ROOT,
                         env=env),
        # A training worker, as a GPU machine would run one: it reaches this server by URL.
        subprocess.Popen(_worker_argv("train", 1, "solo"), cwd=ROOT, env=dict(
            env, TANDEM_BASE_URL=f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}")),
    ]
    click.echo(
        f"\n  Tandem is running at http://{host}:{port}\n"
        f"  admin:   {ADMIN[0]} / {ADMIN[2]}\n"
        f"  labeler: {LABELERS[0][0]} / {LABELERS[0][2]}\n"
        f"  database: {settings.resolved_database_url}\n"
        f"  Press Ctrl-C to stop.\n"
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(p.poll() is None for p in procs):
        time.sleep(0.3)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
    click.echo("Tandem stopped.")
    failed = [p.returncode for p in procs if p.returncode not in (0, -signal.SIGTERM, None)]
    if failed and not stopping:
        sys.exit(1)


if __name__ == "__main__":
    main()
