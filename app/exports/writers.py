"""Write rows to JSONL or Parquet, counting them and fingerprinting each row.

Each row's fingerprint (64 bits of XXH3 over its canonical JSON, the keys sorted) goes into a
side file in row order, so two snapshots can be compared row by row without holding either in
memory. Snapshots made before the manifest named the fingerprint (``FINGERPRINT``) took 64
bits of BLAKE2b: about 1.8 us per row of 1M standard pairs on the thread that makes the rows,
XXH3 0.2; ``fingerprints_of`` makes the current ones again from such a snapshot's files.

The thread that makes the rows only serializes and fingerprints them; a worker thread does
the rest (JSONL: SHA-256 and writes of ~1 MB chunks; Parquet: encoding and compression of a
row group), which release the GIL and so run alongside.

Every ``SYNC_EVERY`` bytes the worker waits for what it wrote to reach the disk and drops it
from the page cache. The build fsyncs its files before it succeeds anyway; this spreads that
wait over the build instead of leaving seconds of it at the end, keeps a snapshot of several
GB from evicting what PostgreSQL and the other processes keep in the page cache, and lets the
kernel reuse the same few pages for the whole file: writing 2.2 GB into fresh page cache took
the worker about 4.5 us of (system) CPU per row of a 1M-pair JSONL snapshot on the 2-core
VM, with the pages used again about 1.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import xxhash

from app.exports.background import Worker
from app.exports.columns import columns_for
from app.exports.formats import Container, ExportFormat
from app.exports.pairs import PairRows, Row

# Rows per row group: two are in memory at once (one made, one compressed and written), so
# this sets the peak (20,000 rows of ~2.5 KB took a 1M-pair build to 295 MB).
PARQUET_BATCH = 10_000
JSONL_CHUNK = 1 << 20
SYNC_EVERY = 16 << 20  # ~10 ms of the disk: less than the worker's queue of chunks holds
_SORT_KEYS = orjson.OPT_SORT_KEYS
_NEWLINE = orjson.OPT_APPEND_NEWLINE
FINGERPRINT = "xxh3-64"  # as the manifest names it; snapshots that name none: "blake2b-64"
_xxh3 = xxhash.xxh3_64_digest  # 8 bytes, big-endian


def fingerprint(row: dict[str, Any]) -> int:
    return int.from_bytes(_digest(row), "big")


def _digest(row: dict[str, Any]) -> bytes:
    return _xxh3(orjson.dumps(row, option=_SORT_KEYS))


def fingerprints_of(paths: list[Path], container: Container, fmt: ExportFormat) -> array:
    """The fingerprints of every row of the data files, in order, made from the files: for a
    snapshot whose own were made another way. Each row is read back as the dict it was
    written from: JSON lines as they are; Parquet rows as ``Table.from_pylist`` took them
    (every key of the format is in every row; the full-fidelity format's JSON text columns
    parsed again)."""
    digests = bytearray()
    for path in paths:
        for row in _rows_back(path, container, fmt):
            digests += _digest(row)
    return _as_fingerprints(digests)


def _as_fingerprints(digests: bytes) -> array:
    """Big-endian 8-byte digests, one after another, as the fingerprints they spell."""
    out = array("Q")
    out.frombytes(digests)
    if sys.byteorder == "little":
        out.byteswap()
    return out


def _rows_back(path: Path, container: Container, fmt: ExportFormat) -> Iterator[dict[str, Any]]:
    if container == Container.JSONL:
        with path.open("rb") as f:
            for line in f:
                yield orjson.loads(line)
        return
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            if fmt == ExportFormat.TANDEM:
                row = {k: v if k == "external_id" else orjson.loads(v)
                       for k, v in row.items() if v is not None or k == "external_id"}
            yield row


def arrow_schema(fmt: ExportFormat, margin: bool):  # noqa: ANN201  (pyarrow.Schema)
    import pyarrow as pa

    msgs = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    fields: list[tuple[str, Any]]
    if fmt == ExportFormat.STANDARD:
        fields = [("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string())]
    elif fmt == ExportFormat.CONVERSATIONAL:
        fields = [("prompt", msgs), ("chosen", msgs), ("rejected", msgs)]
    elif fmt == ExportFormat.KTO:
        fields = [("prompt", pa.string()), ("completion", pa.string()), ("label", pa.bool_())]
    elif fmt == ExportFormat.KTO_CONVERSATIONAL:
        fields = [("prompt", msgs), ("completion", msgs), ("label", pa.bool_())]
    elif fmt == ExportFormat.SFT:
        fields = [("messages", msgs)]
    elif fmt == ExportFormat.OPENAI:
        fields = [("input", pa.struct([("messages", msgs)])), ("preferred_output", msgs),
                  ("non_preferred_output", msgs)]
    else:  # the full-fidelity format keeps its nested parts as JSON text
        from app.exports.tandem import PARQUET_COLUMNS

        fields = [(name, pa.string()) for name in PARQUET_COLUMNS]
    if margin and fmt in (ExportFormat.STANDARD, ExportFormat.CONVERSATIONAL):
        fields.append(("margin", pa.float64()))
    return pa.schema(fields)


class RowWriter:
    """Rows into one data file; ``close`` returns its name, row count, size and sha256.

    Rows come as dicts (``write``) or, for a pair format, as the parts ``pair_rows`` makes
    (``write_pairs``); either way the file and the fingerprints are the same.
    """

    def __init__(self, path: Path, *, fmt: ExportFormat, container: Container,
                 margin: bool, pair_rows: PairRows | None = None) -> None:
        self.path, self.fmt, self.container = path, fmt, container
        self._pair_rows = pair_rows
        self.rows = 0
        # big-endian 8-byte digests, made into ``fingerprints`` once the file is closed
        self._digests = bytearray()
        self._sha = hashlib.sha256()
        self._file = _DataFile(path.open("wb"), self._sha)
        if container == Container.JSONL:
            self._chunk = bytearray()
            # 16 chunks: the disk's pauses (``SYNC_EVERY``) need not stop the rows' thread
            self._worker = Worker(self._file.write, depth=16, name=f"export-{path.name}")
        else:
            import pyarrow.parquet as pq

            self._schema = arrow_schema(fmt, margin)
            self._columns = list(zip(self._schema.names, columns_for(self._schema), strict=True))
            self._appends = [column.append for _, column in self._columns]
            if pair_rows is not None and pair_rows.keys != self._schema.names:
                raise ValueError(f"pair rows {pair_rows.keys} for a {self._schema.names} file")
            self._pending = 0  # rows in the row group being made
            self._parquet = pq.ParquetWriter(self._file, self._schema, compression="zstd")
            # one row group written while the next is made: two in memory at most
            self._worker = Worker(self._parquet.write_table, depth=1,
                                  name=f"export-{path.name}")

    @property
    def fingerprints(self) -> array:
        """Each row's fingerprint, in row order."""
        return _as_fingerprints(self._digests)

    def write(self, row: dict[str, Any]) -> None:
        self.rows += 1
        self._digests += _digest(row)
        if self.container == Container.JSONL:
            self._chunk += orjson.dumps(row, option=_NEWLINE)
            if len(self._chunk) >= JSONL_CHUNK:
                self._worker.submit(self._chunk)
                self._chunk = bytearray()
        else:
            if self.fmt == ExportFormat.TANDEM:
                # every column but the id is JSON text: nested and varying shapes fit one schema
                row = {k: v if k == "external_id" else orjson.dumps(v).decode()
                       for k, v in row.items()}
            # as Table.from_pylist reads rows: a missing key is a null, an unknown one ignored
            for name, column in self._columns:
                column.append(row.get(name))
            self._pending += 1
            if self._pending >= PARQUET_BATCH:
                self._flush()

    def write_pairs(self, rows: list[Row]) -> None:
        """Rows of a pair format as parts: the same bytes as ``write`` of each as a dict."""
        pair_rows = self._pair_rows
        sorted_json = pair_rows.sorted_json
        digests = self._digests
        for row in rows:
            digests += _xxh3(sorted_json(row))
        self.rows += len(rows)
        if self.container == Container.JSONL:
            line, chunk = pair_rows.line, self._chunk
            for row in rows:
                chunk += line(row)
            if len(chunk) >= JSONL_CHUNK:
                self._worker.submit(chunk)
                self._chunk = bytearray()
        else:
            appends = self._appends
            for row in rows:
                for append, part in zip(appends, row, strict=True):
                    append(part[0])
            self._pending += len(rows)
            if self._pending >= PARQUET_BATCH:
                self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._pending:
            table = pa.Table.from_arrays([column.finish() for _, column in self._columns],
                                         schema=self._schema)
            self._pending = 0
            self._worker.submit(table)
            # The worker takes one table at a time (depth 1): now that it has this one, the
            # one before is written and gone, and its columns' buffers can be filled again.
            del table
            for _, column in self._columns:
                column.release(keep=1)

    def close(self) -> dict[str, Any]:
        if self.container == Container.JSONL:
            if self._chunk:
                self._worker.submit(self._chunk)
                self._chunk = bytearray()
            self._worker.close()
            self._file.close()
            digest = self._sha.hexdigest()
        else:
            self._flush()
            self._worker.close()
            self._parquet.close()
            self._file.close()
            digest = self._sha.hexdigest()
        return {"name": self.path.name, "rows": self.rows, "bytes": self.path.stat().st_size,
                "sha256": digest}

    def abort(self) -> None:
        try:
            self._worker.close()
        except BaseException:  # noqa: BLE001  (cleaning up after an earlier error)
            pass
        try:
            if self.container == Container.PARQUET:
                self._parquet.close()
        except Exception:  # noqa: BLE001  (cleaning up after an earlier error)
            pass
        self._file.close()


class _DataFile(io.RawIOBase):
    """A data file that hashes what is written to it (its sha256 without reading it back:
    about a second at 1M pairs) and hands it to the disk every ``SYNC_EVERY`` bytes."""

    def __init__(self, file: BinaryIO, sha: Any) -> None:
        super().__init__()
        self._file, self._sha, self._size, self._synced = file, sha, 0, 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        self._size += len(data)
        written = self._file.write(data)
        if self._size - self._synced >= SYNC_EVERY:
            self._sync()
        return written

    def _sync(self) -> None:
        """Wait until what is written is on disk, then drop it from the page cache (only
        clean pages can be dropped)."""
        self._file.flush()
        fd = self._file.fileno()
        getattr(os, "fdatasync", os.fsync)(fd)  # no fdatasync or posix_fadvise on macOS
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, self._size, os.POSIX_FADV_DONTNEED)
        self._synced = self._size

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._file.close()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_rows(path: Path, container: Container, indexes: set[int] | None = None,
              limit: int = 20) -> list[dict[str, Any]]:
    """Rows of a data file, only those at ``indexes`` if given, at most ``limit``."""
    out: list[dict[str, Any]] = []
    if container == Container.JSONL:
        with path.open("rb") as f:
            for n, line in enumerate(f):
                if indexes is None or n in indexes:
                    out.append(orjson.loads(line))
                    if len(out) >= limit:
                        break
        return out
    import pyarrow.parquet as pq

    offset = 0
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=10_000):
        for n, row in enumerate(batch.to_pylist(), start=offset):
            if indexes is None or n in indexes:
                out.append(row)
                if len(out) >= limit:
                    return out
        offset += batch.num_rows
    return out
