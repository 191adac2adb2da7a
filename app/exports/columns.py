"""Parquet row groups made column by column as the rows arrive.

Strings go straight into one UTF-8 buffer and an offsets array, floats and booleans into
flat buffers, and Arrow uses those as they are. Holding a row group as lists of Python
objects and converting them with ``pa.array`` kept the objects, the growing Arrow buffers
and the finished ones in memory at once (several times the row group), and its first call
imports pandas (about 50 MB more). Nested columns are still lists converted as
``Table.from_pylist`` converts them. The arrays, and so the file, are the same either way.

A string column's buffers are used again, row group after row group, once the writer says
the arrays made from them are written (``release``): a fresh mapping per row group had every
page faulted in again, about 2 us of the main thread's CPU per row of a 1M-pair snapshot
(600k page faults; the pages of a mapping in use again are there already).
"""

from __future__ import annotations

import mmap
from array import array
from typing import Any

_MAX_OFFSET = 2**31 - 1  # Arrow's string type has 32-bit offsets


def _validity(n: int, nulls: list[int]):  # noqa: ANN202  (pyarrow.Buffer | None)
    if not nulls:
        return None
    import numpy as np
    import pyarrow as pa

    valid = np.ones(n, dtype=bool)
    valid[nulls] = False
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


class _Bytes:
    """Append-only bytes in a memory mapping of their own. Row group after row group, growing
    bytearrays of tens of MB left holes in the heap that kept RSS about 30 MB higher."""

    __slots__ = ("map", "size")

    def __init__(self, capacity: int) -> None:
        self.map = mmap.mmap(-1, max(capacity, mmap.PAGESIZE))
        self.size = 0

    def grow(self, end: int) -> None:
        """Room for ``end`` bytes (appends write ``map[size:end]`` and set ``size`` themselves:
        a call per string cost more than the rest of the append)."""
        bigger = mmap.mmap(-1, max(end, 2 * len(self.map)))
        bigger.write(memoryview(self.map)[:self.size])
        self.map = bigger

    def buffer(self):  # noqa: ANN201  (pyarrow.Buffer, zero-copy)
        import pyarrow as pa

        return pa.py_buffer(self.map).slice(0, self.size)


class StringColumn:
    __slots__ = ("_chunks", "_data", "_offsets", "_nulls", "_filled", "_finished", "_spare")

    def __init__(self) -> None:
        self._chunks: list[Any] = []
        self._filled: list[_Bytes] = []  # the buffers of the arrays since the last finish
        self._finished: list[list[_Bytes]] = []  # those of each finish not yet released
        self._spare: list[_Bytes] = []  # released: no array points into them any more
        self._start(1 << 20)

    def _start(self, capacity: int) -> None:
        # a buffer no array points into, or a new one: a finished array still points into
        # the buffers it was made from until it is released
        self._data = self._spare_or(capacity)
        self._filled.append(self._data)
        self._offsets = array("i", [0])
        self._nulls: list[int] = []

    def _again(self) -> None:
        """Start the next chunk, guessing its size from this one's: a buffer seldom grows."""
        self._start(self._data.size + self._data.size // 8)

    def append(self, value: str | None) -> None:
        if isinstance(value, str):
            encoded = value.encode()
            data = self._data
            end = data.size + len(encoded)
            if end > _MAX_OFFSET:
                self._chunks.append(self._chunk())
                self._again()
                data, end = self._data, len(encoded)
            if end > len(data.map):
                data.grow(end)
            data.map[data.size:end] = encoded
            data.size = end
            self._offsets.append(end)
        elif value is None:
            self._nulls.append(len(self._offsets) - 1)
            self._offsets.append(self._data.size)
        else:
            raise TypeError(f"expected a string or None, got {type(value).__name__}")

    def _chunk(self):  # noqa: ANN202  (pyarrow.StringArray)
        import pyarrow as pa

        n = len(self._offsets) - 1
        return pa.Array.from_buffers(
            pa.string(), n, [_validity(n, self._nulls), pa.py_buffer(self._offsets),
                             self._data.buffer()], null_count=len(self._nulls))

    def finish(self):  # noqa: ANN201  (pyarrow.Array or ChunkedArray)
        """The column so far, which then starts again empty."""
        import pyarrow as pa

        chunks = [*self._chunks, self._chunk()]
        self._chunks = []
        self._finished.append(self._filled)
        self._filled = []
        self._again()
        return chunks[0] if len(chunks) == 1 else pa.chunked_array(chunks, type=pa.string())

    def release(self, keep: int) -> None:
        """Arrays of all but the last ``keep`` calls of ``finish`` are gone (written, and no
        longer referenced): their buffers may be filled again."""
        while len(self._finished) > keep:
            self._spare.extend(self._finished.pop(0))
        if self._spare and self._filled == [self._data] and not self._data.size:
            # Nothing is in the buffer ``finish`` started: take a released one instead, so
            # that two row groups' buffers take turns (a new mapping costs nothing until its
            # pages are touched).
            self._data = self._filled[0] = self._spare_or(0)

    def _spare_or(self, capacity: int) -> _Bytes:
        """A released buffer, emptied (it grows if it must, as a new one does), or a new one."""
        if not self._spare:
            return _Bytes(capacity)
        spare = self._spare.pop()
        spare.size = 0
        return spare


class FloatColumn:
    __slots__ = ("_values", "_nulls")

    def __init__(self) -> None:
        self._values = array("d")
        self._nulls: list[int] = []

    def append(self, value: float | None) -> None:
        if value is None:
            self._nulls.append(len(self._values))
            value = 0.0
        self._values.append(value)

    def finish(self):  # noqa: ANN201  (pyarrow.DoubleArray)
        import pyarrow as pa

        values, nulls = self._values, self._nulls
        self._values, self._nulls = array("d"), []
        return pa.Array.from_buffers(pa.float64(), len(values),
                                     [_validity(len(values), nulls), pa.py_buffer(values)],
                                     null_count=len(nulls))

    def release(self, keep: int) -> None:
        """Nothing to use again: each ``finish`` hands its buffers over."""


class BoolColumn:
    __slots__ = ("_values", "_nulls")

    def __init__(self) -> None:
        self._values = bytearray()
        self._nulls: list[int] = []

    def append(self, value: bool | None) -> None:
        if value is None:
            self._nulls.append(len(self._values))
        elif not isinstance(value, bool):
            raise TypeError(f"expected a bool or None, got {type(value).__name__}")
        self._values.append(1 if value else 0)

    def finish(self):  # noqa: ANN201  (pyarrow.BooleanArray)
        import numpy as np
        import pyarrow as pa

        values, nulls = self._values, self._nulls
        self._values, self._nulls = bytearray(), []
        bits = np.packbits(np.frombuffer(values, dtype=bool), bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values),
                                     [_validity(len(values), nulls), pa.py_buffer(bits)],
                                     null_count=len(nulls))

    def release(self, keep: int) -> None:
        """Nothing to use again: each ``finish`` hands its buffers over."""


class ValueColumn:
    """Any other type (lists, structs): a list, converted by ``pa.array``."""

    __slots__ = ("_type", "_values")

    def __init__(self, type_: Any) -> None:
        self._type = type_
        self._values: list[Any] = []

    def append(self, value: Any) -> None:
        self._values.append(value)

    def finish(self):  # noqa: ANN201  (pyarrow.Array)
        import pyarrow as pa

        values, self._values = self._values, []
        return pa.array(values, type=self._type)

    def release(self, keep: int) -> None:
        """Nothing to use again: each ``finish`` hands its buffers over."""


Column = StringColumn | FloatColumn | BoolColumn | ValueColumn


def columns_for(schema: Any) -> list[Column]:
    """One empty column per field of the Arrow ``schema``."""
    import pyarrow as pa

    def column(type_: Any) -> Column:
        if type_ == pa.string():
            return StringColumn()
        if type_ == pa.float64():
            return FloatColumn()
        if type_ == pa.bool_():
            return BoolColumn()
        return ValueColumn(type_)

    return [column(f.type) for f in schema]
