"""The pair formats are written from encoded parts (app.exports.pairs), not from the dicts
app.exports.formats defines: the bytes must be exactly those of the dicts."""

from __future__ import annotations

import hashlib
import random
import sys
from array import array
from typing import Any

import orjson
import pytest
import xxhash

from app.auth.service import create_api_token
from app.consensus import service as consensus
from app.exports.filters import ExportFilters
from app.exports.formats import ROWS, ExportFormat
from app.exports.pairs import PAIR_FORMATS, PairRows, _rows_of
from app.exports.records import ExportResponse, Record, Tally, iter_records
from app.exports.snapshots import build_snapshot
from tests.support import label_all, make_project, make_user, write

AWKWARD = ["plain", "é à ü ß 中文 😀 \U0001f9ea", 'quote " back \\ slash / sol', "tab\tnl\ncr\r",
           "ctl \x01\x08\x0b\x0c\x1f del \x7f", "line sep \u2028 para \u2029", "</script><b>",
           "nbsp\u00a0zwj\u200d bom \ufeff", "\ufffd\uffff", "a" * 3000, "", " "]
CHAT = [{"role": "system", "content": 'Be "brief".\n😀'}, {"role": "user", "content": "2+2?\t"}]
MARGINS = [2.0, 1.0, 0.5, 0.0, -0.0, 1e-7, 3.141592653589793, 1e300, 7]


def raw_batch(rng: random.Random, n: int) -> tuple[list[tuple], list[tuple]]:
    """Item and response rows as the lean read gives them, with every awkward case: chat
    prompts, rankings (each response in several pairs), a pair naming another item's
    response or a missing one, integer and signed-zero margins."""
    items, responses = [], []
    rid = 100
    for item_id in range(1, n + 1):
        ids = list(range(rid, rid + rng.choice([2, 2, 3, 4])))
        rid += len(ids)
        for r in ids:
            responses.append((r, item_id, f"{rng.choice(AWKWARD)} {r} {rng.choice(AWKWARD)}"))
        pairs = [[a, b, rng.random(), rng.choice(MARGINS)] for a in ids for b in ids if a < b]
        if item_id % 7 == 0:
            pairs.append([ids[0], ids[0] - 1, 1.0, 2.0])  # another item's response
        if item_id % 11 == 0:
            pairs.append([ids[0], 99_999, 1.0, 2.0])  # a response that is not there
        prompt = CHAT if item_id % 3 == 0 else f"Q{item_id}: {rng.choice(AWKWARD)}?"
        items.append((item_id, rng.choice(["human", "gold", "ai_accepted"]),
                       orjson.dumps(pairs).decode(), orjson.dumps(prompt).decode()))
    rng.shuffle(responses)  # the read gives them in no particular order
    return items, responses


def records_of(items: list[tuple], responses: list[tuple]) -> list[Record]:
    """The same rows as the Record path reads them (what app.exports.formats takes)."""
    records = {i: Record(item_id=i, source=s, agreement=None, confidence=None,
                         pairs=orjson.loads(p), external_id=str(i), prompt=orjson.loads(q))
               for i, s, p, q in items}
    for rid, item_id, text in responses:
        records[item_id].responses[rid] = ExportResponse(rid, text, None, "imported", None)
    return list(records.values())


@pytest.mark.parametrize("margin", [False, True])
@pytest.mark.parametrize("fmt", sorted(PAIR_FORMATS))
def test_pair_rows_are_byte_for_byte_the_rows_of_the_format(fmt: ExportFormat,
                                                            margin: bool) -> None:
    items, responses = raw_batch(random.Random(f"{fmt}-{margin}"), 60)
    expected = [row for record in records_of(items, responses)
                for row in ROWS[fmt](record, margin)]
    rows = PairRows(fmt, margin, fingerprints=True)
    tally = Tally()
    got = [row for _, item_rows in _rows_of(items, responses, rows, tally) for row in item_rows]

    assert len(got) == len(expected) > 100
    for parts, row in zip(got, expected, strict=True):
        assert rows.line(parts) == orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
        assert rows.sorted_json(parts) == orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
        assert [p[0] for p in parts] == list(row.values())  # what a Parquet row holds
        assert rows.keys == list(row)
    pairs = sum(len(orjson.loads(p)) for _, _, p, _ in items)
    assert (tally.items, tally.pairs, sum(tally.by_source.values())) == (60, pairs, pairs)


def test_zero_margins_keep_their_sign() -> None:
    rows = PairRows(ExportFormat.STANDARD, True, fingerprints=True)
    items = [(1, "human", "[[1, 2, 1.0, 0.0], [1, 2, 1.0, -0.0], [1, 2, 1.0, 0.0]]", '"p"')]
    lines = [rows.line(r) for _, rs in _rows_of(items, [(1, 1, "a"), (2, 1, "b")], rows,
                                                 Tally()) for r in rs]
    assert lines == [b'{"prompt":"p","chosen":"a","rejected":"b","margin":0.0}\n',
                     b'{"prompt":"p","chosen":"a","rejected":"b","margin":-0.0}\n',
                     b'{"prompt":"p","chosen":"a","rejected":"b","margin":0.0}\n']


def reference(project_id: int, fmt: ExportFormat, margin: bool) -> list[dict[str, Any]]:
    """Every row of the project in the format, made by the Record path and formats.ROWS."""
    consensus.refresh(project_id)
    return [row for batch in iter_records(project_id=project_id, filters=ExportFilters())
            for record in batch for row in ROWS[fmt](record, margin)]


@pytest.mark.parametrize("container", ["jsonl", "parquet"])
def test_exports_hold_exactly_the_rows_the_formats_define(client, app_env, monkeypatch,
                                                           container: str) -> None:
    from app.exports import records

    monkeypatch.setattr(records, "FIRST_BATCH", 2)  # so that rows cross a batch boundary
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, task_type="ranking", items=[
        {"external_id": f"r{i}", "prompt": CHAT if i % 3 == 0 else f"Rank {AWKWARD[i]}",
         "responses": [f"{AWKWARD[(i + k) % len(AWKWARD)]} {k}" for k in range(3)]}
        for i in range(len(AWKWARD))])
    label_all(project, admin, lambda t: {"ranking": [r.id for r in reversed(t.responses)]})
    token = write(create_api_token, user=admin, project_id=project.id, name="t",
                  scopes=["export"]).secret
    headers = {"Authorization": f"Bearer {token}"}

    for fmt in sorted(PAIR_FORMATS):
        rows = reference(project.id, fmt, True)
        assert len(rows) == 3 * len(AWKWARD)
        made = client.post(f"/api/v1/projects/{project.id}/snapshots", headers=headers,
                           json={"format": fmt, "container": container, "margin": True})
        build_snapshot(snapshot_id=made.json()["id"])
        snap = client.get(f"/api/v1/projects/{project.id}/snapshots/{made.json()['id']}",
                          headers=headers).json()
        folder = app_env.data_dir / "exports" / f"project-{project.id}" / f"snapshot-{snap['id']}"
        data = (folder / f"train.{container}").read_bytes()
        if container == "jsonl":
            assert data == b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE)
                                    for r in rows)
        else:
            import pyarrow.parquet as pq

            assert pq.read_table(folder / "train.parquet").to_pylist() == rows
        assert snap["manifest"]["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
        fingerprints = b"".join(
            xxhash.xxh3_64_digest(orjson.dumps(r, option=orjson.OPT_SORT_KEYS)) for r in rows)
        assert (folder / "rows.fingerprints").read_bytes() == _native(fingerprints)

    for fmt in sorted(PAIR_FORMATS):
        for margin in (False, True):
            streamed = client.get(f"/api/v1/projects/{project.id}/export",
                                  params={"format": fmt, "margin": margin}, headers=headers)
            assert streamed.content == b"".join(
                orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE)
                for r in reference(project.id, fmt, margin))


def _native(digests: bytes) -> bytes:
    """Big-endian 8-byte digests as the fingerprints file stores them (native uint64)."""
    out = array("Q")
    out.frombytes(digests)
    if sys.byteorder == "little":
        out.byteswap()
    return out.tobytes()
