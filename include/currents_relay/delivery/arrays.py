"""Arrow arrays built from and read through their buffers.

pyarrow's conversion of Python objects (`pa.array`, `pa.scalar`, a Python value passed to a
compute function) imports pandas the first time (~0.26 s and ~40 MB in every push task):
the push builds and reads its arrays here instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

_LARGE = (pa.large_string(), pa.large_binary())


def from_sizes(kind: pa.DataType, sizes: np.ndarray, data: bytes) -> pa.Array:
    """A (large) string or binary array of values `sizes` bytes each, back to back in `data`."""
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64 if kind in _LARGE else np.int32)
    np.cumsum(sizes, out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(kind, len(sizes), buffers)


def strings(values: Sequence[str]) -> pa.Array:
    encoded = [value.encode() for value in values]
    sizes = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    return from_sizes(pa.string(), sizes, b"".join(encoded))


def repeated(kind: pa.DataType, value: np.generic, n: int) -> pa.Array:
    """`value` n times, as an array of `kind` (a fixed-width type)."""
    return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(np.full(n, value))])


def integers(values: Sequence[int] | np.ndarray) -> pa.Array:
    """An int64 array (indices for `take`)."""
    data = np.asarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def offsets(array: pa.Array) -> np.ndarray:
    """The value offsets of a (large) string or binary array, as sliced."""
    width = np.int64 if array.type in _LARGE else np.int32
    found = np.frombuffer(array.buffers()[1], dtype=width)
    return found[array.offset : array.offset + len(array) + 1]


def joined(array: pa.Array) -> memoryview:
    """The values of a (large) string or binary array, back to back (no copy)."""
    data = array.buffers()[2]
    if data is None or not len(array):
        return memoryview(b"")
    bounds = offsets(array)
    return memoryview(data)[int(bounds[0]) : int(bounds[-1])]
