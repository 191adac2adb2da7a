"""Write rows to JSONL or Parquet, counting them and fingerprinting each row.

Each row's fingerprint (64 bits of BLAKE2b over its canonical JSON) goes into a side file
in row order, so two snapshots can be compared row by row without holding either in memory.

The thread that makes the rows only serializes and fingerprints them; a worker thread does
the rest (JSONL: SHA-256 and writes of ~1 MB chunks; Parquet: encoding and compression of a
row group), which release the GIL and so run alongside.
"""

from __future__ import annotations

import hashlib
import io
import sys
from array import array
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from app.exports.background import Worker
from app.exports.columns import columns_for
from app.exports.formats import Container, ExportFormat
from app.exports.pairs import PairRows, Row

# Rows per row group: two are in memory at once (one made, one compressed and written), so
# this sets the peak (20,000 rows of ~2.5 KB took a 1M-pair build to 295 MB).
PARQUET_BATCH = 10_000
JSONL_CHUNK = 1 << 20
_SORT_KEYS = orjson.OPT_SORT_KEYS
_NEWLINE = orjson.OPT_APPEND_NEWLINE
_blake2b = hashlib.blake2b


def fingerprint(row: dict[str, Any]) -> int:
    return int.from_bytes(_digest(row), "big")


def _digest(row: dict[str, Any]) -> bytes:
    return _blake2b(orjson.dumps(row, option=_SORT_KEYS), digest_size=8).digest()


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
        if container == Container.JSONL:
            self._file = path.open("wb")
            self._chunk = bytearray()
            self._worker = Worker(self._write_chunk, name=f"export-{path.name}")
        else:
            import pyarrow.parquet as pq

            self._schema = arrow_schema(fmt, margin)
            self._columns = list(zip(self._schema.names, columns_for(self._schema), strict=True))
            if pair_rows is not None and pair_rows.keys != self._schema.names:
                raise ValueError(f"pair rows {pair_rows.keys} for a {self._schema.names} file")
            self._pending = 0  # rows in the row group being made
            self._file = path.open("wb")
            self._parquet = pq.ParquetWriter(_Hashing(self._file, self._sha), self._schema,
                                             compression="zstd")
            # one row group written while the next is made: two in memory at most
            self._worker = Worker(self._parquet.write_table, depth=1,
                                  name=f"export-{path.name}")

    @property
    def fingerprints(self) -> array:
        """Each row's fingerprint, in row order."""
        out = array("Q")
        out.frombytes(self._digests)
        if sys.byteorder == "little":
            out.byteswap()
        return out

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
            digests += _blake2b(sorted_json(row), digest_size=8).digest()
        self.rows += len(rows)
        if self.container == Container.JSONL:
            line, chunk = pair_rows.line, self._chunk
            for row in rows:
                chunk += line(row)
            if len(chunk) >= JSONL_CHUNK:
                self._worker.submit(chunk)
                self._chunk = bytearray()
        else:
            for row in rows:
                for (_, column), part in zip(self._columns, row, strict=True):
                    column.append(part[0])
            self._pending += len(rows)
            if self._pending >= PARQUET_BATCH:
                self._flush()

    def _write_chunk(self, chunk: bytearray) -> None:
        self._sha.update(chunk)
        self._file.write(chunk)

    def _flush(self) -> None:
        import pyarrow as pa

        if self._pending:
            table = pa.Table.from_arrays([column.finish() for _, column in self._columns],
                                         schema=self._schema)
            self._pending = 0
            self._worker.submit(table)

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


class _Hashing(io.RawIOBase):
    """A file that hashes what is written to it: the Parquet file's sha256 without reading
    it back (about a second at 1M pairs)."""

    def __init__(self, file: BinaryIO, sha: Any) -> None:
        super().__init__()
        self._file, self._sha, self._size = file, sha, 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        self._size += len(data)
        return self._file.write(data)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        self._file.flush()


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
