"""Snapshots made before row fingerprints changed (BLAKE2b, no name in the manifest) still
compare with new ones: their fingerprints are made again from their files."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from app.core.db import session_scope
from app.exports import snapshots
from app.items.service import import_records
from app.models import ExportSnapshot
from tests.exports.test_snapshots import rate, rated_items, setup_project, snapshot
from tests.support import label_all, write


def made_before_the_change(snapshot_id: int) -> None:
    """What a snapshot of the earlier code looks like: no ``fingerprint`` in its manifest and
    other 64-bit values in its fingerprints file."""
    with session_scope(write=True) as db:
        snap = db.get(ExportSnapshot, snapshot_id)
        snap.manifest = {k: v for k, v in snap.manifest.items() if k != "fingerprint"}
        path = snapshots.snapshots_root() / snap.path / snapshots.FINGERPRINTS
    os.chmod(path, stat.S_IWUSR | stat.S_IRUSR)
    old = np.fromfile(path, dtype=np.uint64)
    (old ^ np.uint64(0x5A5A5A5A5A5A5A5A)).tofile(path)


@pytest.mark.parametrize(("fmt", "container"), [("standard", "jsonl"), ("standard", "parquet"),
                                                ("conversational", "parquet"),
                                                ("tandem", "parquet"), ("kto", "jsonl")])
def test_an_old_snapshot_compares_with_a_new_one_as_two_new_ones_do(
        client, fmt: str, container: str) -> None:
    admin, project, headers = setup_project(4)
    first = snapshot(client, headers, project.id, format=fmt, container=container)
    assert first["manifest"]["fingerprint"] == "xxh3-64"
    with session_scope() as db:
        own = snapshots._fingerprints(db.get(ExportSnapshot, first["id"]))
    write(lambda db: import_records(db, project=project, user=admin,
                                    records=rated_items(2, start=10)))
    label_all(project, admin, rate, key="more")
    second = snapshot(client, headers, project.id, format=fmt, container=container)
    url = f"/api/v1/projects/{project.id}/snapshots/{second['id']}/compare/{first['id']}"
    both_new = client.get(url, headers=headers).json()
    assert both_new["added"] > 0 and both_new["unchanged"] == first["rows"]

    made_before_the_change(first["id"])
    with session_scope() as db:
        again = snapshots._fingerprints(db.get(ExportSnapshot, first["id"]))
    assert np.array_equal(again, own)  # made again from the rows: the same values
    assert client.get(url, headers=headers).json() == both_new
