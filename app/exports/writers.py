"""Write rows to JSONL or Parquet, counting them and fingerprinting each row.

Each row's fingerprint (64 bits of BLAKE2b over its canonical JSON) goes into a side file
in row order, so two snapshots can be compared row by row without holding either in memory.

The thread that makes the rows only serializes and fingerprints them; a worker thread does
the rest (JSONL: SHA-256 and writes of ~1 MB chunks; Parquet: encoding and compression of a
row group), which release the GIL and so run alongside.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from pathlib import Path
from typing import Any

import orjson

from app.exports.background import Worker
from app.exports.columns import columns_for
from app.exports.formats import Container, ExportFormat

PARQUET_BATCH = 20_000  # rows per row group
JSONL_CHUNK = 1 << 20
_SORT_KEYS = orjson.OPT_SORT_KEYS
_NEWLINE = orjson.OPT_APPEND_NEWLINE


def fingerprint(row: dict[str, Any]) -> int:
    return int.from_bytes(_digest(row), "big")


def _digest(row: dict[str, Any]) -> bytes:
    return hashlib.blake2b(orjson.dumps(row, option=_SORT_KEYS), digest_size=8).digest()


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
    """Rows into one data file; ``close`` returns its name, row count, size and sha256."""

    def __init__(self, path: Path, *, fmt: ExportFormat, container: Container,
                 margin: bool) -> None:
        self.path, self.fmt, self.container = path, fmt, container
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
            self._pending = 0  # rows in the row group being made
            self._parquet = pq.ParquetWriter(path, self._schema, compression="zstd")
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
            digest = sha256_of(self.path)
        return {"name": self.path.name, "rows": self.rows, "bytes": self.path.stat().st_size,
                "sha256": digest}

    def abort(self) -> None:
        try:
            self._worker.close()
        except BaseException:  # noqa: BLE001  (cleaning up after an earlier error)
            pass
        try:
            if self.container == Container.JSONL:
                self._file.close()
            else:
                self._parquet.close()
        except Exception:  # noqa: BLE001  (cleaning up after an earlier error)
            pass


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
