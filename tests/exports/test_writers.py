"""Data files of snapshots as the writer makes them: row groups, chunks, page cache."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from app.exports import writers
from app.exports.formats import Container, ExportFormat


def standard_rows(n: int) -> list[dict]:
    """Rows whose texts change length from row group to row group, so that a string column's
    buffer, filled again, holds more (and less) than it did before."""
    rng = random.Random(7)
    rows = []
    for i in range(n):
        size = rng.choice([0, 5, 80, 4000]) * (1 + (i // 10) % 3)
        rows.append({"prompt": f"p{i} " + "é" * (i % 4), "chosen": f"c{i}:" + "x" * size,
                     "rejected": None if i % 9 == 0 else f"r{i}" * (i % 5),
                     "margin": float(i % 3)})
    return rows


def test_every_parquet_row_group_holds_its_own_rows(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writers, "PARQUET_BATCH", 10)  # 10 row groups, buffers used again
    rows = standard_rows(97)
    path = tmp_path / "train.parquet"
    writer = writers.RowWriter(path, fmt=ExportFormat.STANDARD, container=Container.PARQUET,
                               margin=True)
    for row in rows:
        writer.write(row)
    info = writer.close()

    assert pq.ParquetFile(path).metadata.num_row_groups == 10
    assert pq.read_table(path).to_pylist() == rows
    assert info["rows"] == len(rows)
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("container", [Container.JSONL, Container.PARQUET])
def test_files_handed_to_the_disk_as_they_grow_are_whole(tmp_path: Path, container: Container,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writers, "SYNC_EVERY", 4096)  # synced and dropped many times over
    monkeypatch.setattr(writers, "PARQUET_BATCH", 7)
    monkeypatch.setattr(writers, "JSONL_CHUNK", 1000)
    rows = standard_rows(60)
    path = tmp_path / f"train.{container.value}"
    writer = writers.RowWriter(path, fmt=ExportFormat.STANDARD, container=container,
                               margin=True)
    for row in rows:
        writer.write(row)
    info = writer.close()

    data = path.read_bytes()
    if container == Container.JSONL:
        assert data == b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rows)
    else:
        assert pq.read_table(path).to_pylist() == rows
    assert info["bytes"] == len(data)
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
