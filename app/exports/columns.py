"""Parquet row groups made column by column as the rows arrive.

Strings go straight into one UTF-8 buffer and an offsets array, floats and booleans into
flat buffers, and Arrow uses those as they are. Holding a row group as lists of Python
objects and converting them with ``pa.array`` kept the objects, the growing Arrow buffers
and the finished ones in memory at once (several times the row group), and its first call
imports pandas (about 50 MB more). Nested columns are still lists converted as
``Table.from_pylist`` converts them. The arrays, and so the file, are the same either way.
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

    __slots__ = ("_map", "size")

    def __init__(self, capacity: int) -> None:
        self._map = mmap.mmap(-1, max(capacity, mmap.PAGESIZE))
        self.size = 0

    def append(self, data: bytes) -> None:
        end = self.size + len(data)
        if end > len(self._map):
            bigger = mmap.mmap(-1, max(end, 2 * len(self._map)))
            bigger.write(memoryview(self._map)[:self.size])
            self._map = bigger
        self._map[self.size:end] = data
        self.size = end

    def buffer(self):  # noqa: ANN201  (pyarrow.Buffer, zero-copy)
        import pyarrow as pa

        return pa.py_buffer(self._map).slice(0, self.size)


class StringColumn:
    __slots__ = ("_chunks", "_data", "_offsets", "_nulls")

    def __init__(self) -> None:
        self._chunks: list[Any] = []
        self._start(1 << 20)

    def _start(self, capacity: int) -> None:
        # new objects, never cleared: a finished array still points into the old ones
        self._data = _Bytes(capacity)
        self._offsets = array("i", [0])
        self._nulls: list[int] = []

    def _again(self) -> None:
        """Start the next chunk, guessing its size from this one's: a buffer seldom grows."""
        self._start(self._data.size + self._data.size // 8)

    def append(self, value: str | None) -> None:
        if value is None:
            self._nulls.append(len(self._offsets) - 1)
        elif isinstance(value, str):
            encoded = value.encode()
            if self._data.size + len(encoded) > _MAX_OFFSET:
                self._chunks.append(self._chunk())
                self._again()
            self._data.append(encoded)
        else:
            raise TypeError(f"expected a string or None, got {type(value).__name__}")
        self._offsets.append(self._data.size)

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
        self._again()
        return chunks[0] if len(chunks) == 1 else pa.chunked_array(chunks, type=pa.string())


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
