"""Workers that boot together on the embedded (filesystem) broker all start.

kombu's filesystem transport created an exchange's binding file before locking it, so a
second worker binding at the same moment could read it empty and exit on a JSON error
(seen once in the load test's two judge workers). The app now makes the files first.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path


def _bind(folder: str, queue: str, start: multiprocessing.Barrier, errors) -> None:  # noqa: ANN001
    os.environ.update(TANDEM_BROKER_URL="filesystem://", TANDEM_DATA_DIR=folder)
    from app.core.celery import make_celery
    from app.core.config import Settings

    app = make_celery(Settings())
    start.wait()
    try:
        with app.connection_for_write() as conn:
            from kombu import Exchange, Queue

            bound = Queue(queue, Exchange(queue, type="direct"), routing_key=queue)
            bound(conn.channel()).declare()
    except Exception as exc:  # noqa: BLE001 (reported to the test)
        errors.put(f"{type(exc).__name__}: {exc}")


def test_workers_binding_at_once_all_succeed_and_every_binding_is_kept(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    start = ctx.Barrier(6)
    procs = [ctx.Process(target=_bind, args=(str(tmp_path), "judge", start, errors))
             for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    assert all(p.exitcode == 0 for p in procs)
    control = tmp_path / "broker" / "control"
    table = json.loads((control / "judge.exchange").read_text())
    assert table == [["judge", "", "judge"]]
    for name in ("import", "export", "generate", "train", "celery.pidbox"):
        assert json.loads((control / f"{name}.exchange").read_text()) == []
