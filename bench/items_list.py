"""The item list and the project dashboard at 10k and 1M items (issue 7).

    .venv/bin/python -m bench.items_list [--sizes 10000,1000000] [--backends postgresql,sqlite]
                                         [--calls 200] [--keep]

Per backend and size: a fresh database, one k=2 pairwise project seeded with set-based SQL
(40% done with two labels, 10% with one, 50% untouched, 1% of the done ones in conflict, 0.1%
gold, the last 10% in round 2, a rare tag on 0.1% and a common one on the rest, 20 live
leases, ~0.9 labels per item from 20 labelers), then the real server, logged in as the admin,
and ``--calls`` sequential GETs of each page (each filter alone, a tag with each of the
others, deep and previous pages): p50/p99 per page. Writes
bench/results/items-list-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

import httpx

from bench.common import (
    ROOT,
    Server,
    create_backend,
    drop_backend,
    git_commit,
    migrate,
    summary_ms,
)

ADMIN, PASSWORD, K, LABELERS = "bench-admin@example.org", "correct-horse-1", 2, 20
LIST_P99_MS, DASHBOARD_P99_MS = 50, 300

# One row per g in 1..n: what each item is follows from g, so every filter has a known size.
SERIES = {
    "postgresql": "SELECT g FROM generate_series(1, :n) AS g",
    "sqlite": "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n) "
              "SELECT g FROM s",
}
ITEMS_SQL = {
    "postgresql": """
INSERT INTO items (project_id, external_id, prompt, metadata, ready, created_at, label_count,
                   ai_accepted, queue_rank, consensus_stale, is_gold, round)
SELECT :pid, 'item-' || lpad(g::text, 7, '0'), to_jsonb('Question number ' || g || '?'),
       jsonb_build_object('tags', CASE WHEN g % 1000 = 0 THEN jsonb_build_array('rare')
                                       ELSE jsonb_build_array('common') END),
       true, :now, CASE WHEN g % 10 < 4 THEN 2 WHEN g % 10 = 4 THEN 1 ELSE 0 END,
       false, 1, false, g % 1000 = 7, CASE WHEN g > :n * 9 / 10 THEN 2 ELSE 1 END
FROM ({series}) AS s""",
    "sqlite": """
INSERT INTO items (project_id, external_id, prompt, metadata, ready, created_at, label_count,
                   ai_accepted, queue_rank, consensus_stale, is_gold, round)
SELECT :pid, 'item-' || printf('%07d', g), json_quote('Question number ' || g || '?'),
       json_object('tags', json_array(CASE WHEN g % 1000 = 0 THEN 'rare' ELSE 'common' END)),
       1, :now, CASE WHEN g % 10 < 4 THEN 2 WHEN g % 10 = 4 THEN 1 ELSE 0 END,
       0, 1, 0, g % 1000 = 7, CASE WHEN g > :n * 9 / 10 THEN 2 ELSE 1 END
FROM ({series}) AS s""",
}
# The tag index, from the metadata just written (a list of strings, so no comma or `tag` key
# to read: app.items.tags decides those for the app's own writes).
TAGS_SQL = {
    "postgresql": """
INSERT INTO item_tags (project_id, tag, item_id)
SELECT project_id, jsonb_array_elements_text(metadata -> 'tags'), id
FROM items WHERE project_id = :pid""",
    "sqlite": """
INSERT INTO item_tags (project_id, tag, item_id)
SELECT i.project_id, t.value, i.id FROM items i, json_each(i.metadata, '$.tags') t
WHERE i.project_id = :pid""",
}
# Labels: two on each done item, one on each in-progress one, by 20 labelers in turn.
LABELS_SQL = """
INSERT INTO human_labels (project_id, item_id, user_id, idempotency_key, task_type, choice,
                          strength, rule_violations, rationale, time_spent_ms, created_at)
SELECT i.project_id, i.id, u.user_id, 'b-' || i.id || '-' || u.slot, 'pairwise', 'a', 2,
       '{{}}', '', 1000 + i.id % 5000, :now
FROM items i JOIN ({users}) AS u ON u.slot < i.label_count
     AND u.pos = (i.id + u.slot) % :labelers
WHERE i.project_id = :pid"""
CONSENSUS_SQL = """
INSERT INTO item_consensus (item_id, project_id, status, source, pairs, pair_count,
                            human_labels, computed_at)
SELECT id, project_id, CASE WHEN is_gold THEN 'decided' WHEN id % 100 = 3 THEN 'conflict'
                            ELSE 'decided' END,
       CASE WHEN is_gold THEN 'gold' WHEN id % 100 = 3 THEN NULL ELSE 'human' END,
       '[]', 0, label_count, :now
FROM items WHERE project_id = :pid AND (label_count >= 2 OR is_gold)"""
LEASES_SQL = """
INSERT INTO assignments (project_id, item_id, user_id, status, leased_at, expires_at)
SELECT i.project_id, i.id, u.user_id, 'active', :now, :later
FROM ({users}) AS u JOIN items i ON i.id = (SELECT min(id) FROM items
     WHERE project_id = :pid AND label_count = 0) + 10 * u.pos
WHERE u.slot = 0"""


def seed(kind: str, n: int) -> dict:
    """The admin, 20 labelers and a project of ``n`` items (see the module docstring)."""
    from datetime import timedelta

    from sqlalchemy import text

    from app.core.db import get_engine
    from app.models.types import utcnow
    from tests.support import make_project, make_user

    admin = make_user(ADMIN, password=PASSWORD, admin=True)
    labelers = [make_user(f"bench-labeler-{i}@example.org").id for i in range(LABELERS)]
    project = make_project(admin, k=K, name=f"Items bench {n}")
    users = " UNION ALL ".join(f"SELECT {uid} AS user_id, {pos} AS pos, {slot} AS slot"
                               for pos, uid in enumerate(labelers) for slot in range(K))
    now = utcnow().replace(tzinfo=None)
    params = {"pid": project.id, "n": n, "now": now, "labelers": LABELERS,
              "later": now + timedelta(hours=2)}
    t0 = time.perf_counter()
    with get_engine().begin() as conn:
        conn.execute(text(ITEMS_SQL[kind].format(series=SERIES[kind])), params)
        conn.execute(text(TAGS_SQL[kind]), params)
        conn.execute(text(LABELS_SQL.format(users=users)), params)
        conn.execute(text(CONSENSUS_SQL), params)
        conn.execute(text(LEASES_SQL.format(users=users)), params)
    seconds = time.perf_counter() - t0
    # What autovacuum does to a table after a bulk load: statistics and the visibility map
    # (which index-only scans rely on).
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if kind == "postgresql" else "ANALYZE"))
        ids = conn.execute(text("SELECT min(id), max(id) FROM items WHERE project_id = :pid"),
                           {"pid": project.id}).one()
    return {"project_id": project.id, "items": n, "seed_seconds": seconds,
            "vacuum_seconds": time.perf_counter() - t0 - seconds,
            "min_id": ids[0], "max_id": ids[1],
            # the last 100 items' external ids (the seed names them item-0000001 up)
            "late_prefix": f"item-{(n - 1) // 100:05d}"}


def pages(seeded: dict) -> dict[str, str]:
    """Name -> path of every page measured."""
    from app.items.list_schemas import Cursor

    pid, lo, hi = seeded["project_id"], seeded["min_id"], seeded["max_id"]
    deep = Cursor(lo + int((hi - lo) * 0.9)).encode()
    back = Cursor(lo + int((hi - lo) * 0.9), before=True).encode()
    base = f"/projects/{pid}/items"
    return {
        "list: first page": base,
        "list: deep page (90%)": f"{base}?cursor={deep}",
        "list: previous page (deep)": f"{base}?cursor={back}",
        "list: status=todo": f"{base}?status=todo",
        "list: status=in_progress": f"{base}?status=in_progress",
        "list: status=done": f"{base}?status=done",
        "list: status=done, deep": f"{base}?status=done&cursor={deep}",
        "list: status=conflict": f"{base}?status=conflict",
        "list: status=gold": f"{base}?status=gold",
        "list: prefix=item-00012": f"{base}?prefix=item-00012",
        "list: prefix late in id order": f"{base}?prefix={seeded['late_prefix']}",
        "list: round=2": f"{base}?round=2",
        "list: tag=rare (0.1%)": f"{base}?tag=rare",
        "list: tag=common (99.9%)": f"{base}?tag=common",
        "list: tag=rare, deep": f"{base}?tag=rare&cursor={deep}",
        "list: tag=rare, previous page (deep)": f"{base}?tag=rare&cursor={back}",
        "list: tag=common, deep": f"{base}?tag=common&cursor={deep}",
        "list: tag=common, previous page (deep)": f"{base}?tag=common&cursor={back}",
        "list: tag=rare, status=done": f"{base}?tag=rare&status=done",
        "list: tag=rare, status=in_progress": f"{base}?tag=rare&status=in_progress",
        "list: tag=common, status=conflict": f"{base}?tag=common&status=conflict",
        "list: tag=rare, prefix=item-00012": f"{base}?tag=rare&prefix=item-00012",
        "list: tag=rare, round=2": f"{base}?tag=rare&round=2",
        "list: tag=rare, source=gold (none)": f"{base}?tag=rare&source=gold",
        "list: tag=common, source=gold": f"{base}?tag=common&source=gold",
        "list: source=gold": f"{base}?source=gold",
        "api: first page": f"/api/v1/projects/{pid}/items",
        "api: deep page, limit 200": f"/api/v1/projects/{pid}/items?cursor={deep}&limit=200",
        "api: tag=common, deep, limit 200":
            f"/api/v1/projects/{pid}/items?tag=common&cursor={deep}&limit=200",
        "count: all items": f"/projects/{pid}/items-count",
        "dashboard: overview page": f"/projects/{pid}",
        "dashboard: progress partial": f"/projects/{pid}/progress",
    }


def measure(kind: str, n: int, calls: int, keep: bool) -> list[dict]:
    from app.auth.service import create_api_token
    from tests.support import login, write

    backend = create_backend(kind)
    try:
        migrate(backend.env)
        backend.apply()
        seeded = seed(kind, n)
        print(f"  seeded {n:,} items on {kind} in {seeded['seed_seconds']:.1f} s "
              f"(+{seeded['vacuum_seconds']:.1f} s analyze)", flush=True)
        from sqlalchemy import select

        from app.core.db import session_scope
        from app.models import User

        with session_scope() as db:
            admin = db.scalar(select(User).where(User.email == ADMIN))
        token = write(create_api_token, user=admin, project_id=seeded["project_id"],
                      name="bench", scopes=["read"]).secret
        log = ROOT / "bench" / "results" / f"items-list-server-{kind}-{n}.log"
        out = []
        with Server(backend.env, log=log) as server, httpx.Client(base_url=server.url,
                                                                  timeout=30) as client:
            login(client, ADMIN, PASSWORD)
            for name, path in pages(seeded).items():
                headers = {"Authorization": f"Bearer {token}"} if path.startswith("/api") else {}
                for _ in range(5):  # warm the caches and the connection pool
                    client.get(path, headers=headers)
                times = []
                for _ in range(calls):
                    t0 = time.perf_counter()
                    r = client.get(path, headers=headers)
                    times.append(time.perf_counter() - t0)
                    assert r.status_code == 200, (path, r.status_code, r.text[:300])
                shown = (len(r.json()["items"]) if path.startswith("/api")
                         else r.text.count('class="item-row"'))
                target = DASHBOARD_P99_MS if name.startswith("dashboard") else LIST_P99_MS
                out.append({"backend": kind, "items": n, "page": name, "path": path,
                            "rows_shown": shown, "target_p99_ms": target,
                            **summary_ms(times), "seed_seconds": seeded["seed_seconds"]})
        return out
    finally:
        if not keep:
            drop_backend(backend)


def table(rows: list[dict]) -> str:
    head = ["backend", "items", "page", "rows", "p50 ms", "p99 ms", "target"]
    lines = [head] + [[r["backend"], f"{r['items']:,}", r["page"], str(r["rows_shown"]),
                       f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                       ("ok" if r["p99_ms"] < r["target_p99_ms"] else "MISSED")
                       + f" (<{r['target_p99_ms']})"] for r in rows]
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                     for row in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()
    rows: list[dict] = []
    for kind in args.backends.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            print(f"{kind}, {n:,} items", flush=True)
            rows += measure(kind, n, args.calls, args.keep)
    print(table(rows))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = ROOT / "bench" / "results" / f"items-list-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"commit": git_commit(), "calls": args.calls, "rows": rows},
                               indent=2))
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
