"""The IDX file format of MNIST: a small header, then the array's bytes (big-endian).

Layout, as published with MNIST:

========== ======================== ===========================================
offset     bytes                    meaning
========== ======================== ===========================================
0          ``00 00``                always zero
2          1 byte                   element type: ``08`` unsigned byte, ``09``
                                    signed byte, ``0B`` int16, ``0C`` int32,
                                    ``0D`` float32, ``0E`` float64
3          1 byte                   number of dimensions ``d``
4          ``4 d`` bytes            each dimension, a big-endian uint32
4 + 4 d    the product of the       the elements, row-major, big-endian
           dimensions x item size
========== ======================== ===========================================

The four bytes at offset 0 are the *magic number*: ``0x00000803`` for MNIST's
images (unsigned bytes, 3 dimensions), ``0x00000801`` for its labels. Files may
be gzip-compressed (the published ones are); ``read_idx`` tells by the first two
bytes (``1f 8b``). Everything that does not fit raises a ``DataError`` naming the
file: a wrong magic number, a truncated header or body, bytes after the end.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from mnn.data.errors import DataError
from mnn.types import Path

#: IDX type code -> NumPy dtype (big-endian where it matters).
TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
         0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip or plain), checked against its header.

    With ``ndim``, the file must hold an array of that many dimensions.
    """
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: truncated IDX file: {len(data)} bytes, shorter than the "
                        f"4-byte magic number")
    zero, code, dims = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in TYPES:
        raise DataError(f"{path}: not an IDX file: magic number 0x{data[:4].hex()} (expected "
                        f"0x0000TTDD with type TT in {[f'{t:02x}' for t in TYPES]})")
    if ndim is not None and dims != ndim:
        raise DataError(f"{path}: expected an IDX file of {ndim} dimensions (magic "
                        f"0x0000{code:02x}{ndim:02x}), got {dims} (magic 0x{data[:4].hex()})")
    header = 4 + 4 * dims
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header: {len(data)} bytes, but {dims} dimensions "
                        f"need {header}")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=dims, offset=4))
    dtype = TYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "too long"
        raise DataError(f"{path}: {problem} IDX file: the header says shape {shape} of "
                        f"{dtype.name}, {expected} bytes in all, but the file has {len(data)}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # native byte order, and writable


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` to ``path`` in IDX format; gzip-compressed if ``path`` ends in ``.gz``."""
    path = os.fspath(path)
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in TYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"{path}: IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(array, dtype=TYPES[code]).tobytes()
    compress = path.endswith(".gz") if compress is None else compress
    with open(path, "wb") as file:
        file.write(gzip.compress(data, mtime=0) if compress else data)


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise DataError(f"{path}: cannot read the IDX file: {error.strerror or error}") from None
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as error:
        raise DataError(f"{path}: corrupt or truncated gzip file: {error}") from None
