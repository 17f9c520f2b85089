"""Read MXNet `.params` / NDArray-list files with NumPy alone (no mxnet).

File layout (little endian): uint64 magic 0x112, uint64 reserved, uint64 array count, the
arrays, then uint64 name count and per name uint64 length + bytes. Each array is in one of
three layouts, all of which old and new MXNet versions wrote:
  V2:     uint32 0xF993FAC9, int32 storage type, uint32 ndim, int64 dims
  V1:     uint32 0xF993FAC8, uint32 ndim, int64 dims
  legacy: uint32 ndim, uint32 dims
followed (when ndim > 0) by int32 device type, int32 device id, int32 dtype flag, raw data.
"""
import struct

import numpy as np

LIST_MAGIC = 0x112
V2_MAGIC = 0xF993FAC9
V1_MAGIC = 0xF993FAC8
# MXNet's type flags (mshadow): only dense numeric types occur in weight files.
DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8, 6: np.int64}


class _Reader:
    def __init__(self, data, path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt):
        values = struct.unpack(fmt, self.take_bytes(struct.calcsize(fmt)))
        return values if len(values) > 1 else values[0]

    def take_bytes(self, size):
        if self.pos + size > len(self.data):
            raise ValueError(f"{self.path}: truncated MXNet file (wanted {size} bytes at offset {self.pos})")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk


def _read_array(r):
    first = r.take("<I")
    if first == V2_MAGIC:
        storage_type = r.take("<i")
        if storage_type != 0:
            raise ValueError(f"{r.path}: sparse NDArray (storage type {storage_type}) is not supported")
    if first in (V1_MAGIC, V2_MAGIC):  # V2 is V1 after the storage type
        ndim = r.take("<I")
        shape = r.take(f"<{ndim}q") if ndim else ()
    elif first < 32:  # legacy: the first word is ndim itself
        ndim = first
        shape = r.take(f"<{ndim}I") if ndim else ()
    else:
        raise ValueError(f"{r.path}: unknown NDArray magic 0x{first:08X} at offset {r.pos - 4}")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if ndim == 0:
        return np.zeros((0,), np.float32)
    _dev_type, _dev_id, type_flag = r.take("<3i")
    if type_flag not in DTYPES:
        raise ValueError(f"{r.path}: unsupported NDArray dtype flag {type_flag}")
    dtype = np.dtype(DTYPES[type_flag]).newbyteorder("<")
    count = int(np.prod(shape))
    raw = r.take_bytes(count * dtype.itemsize)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_ndarray_file(path):
    """Return {name: array} (names keep MXNet's `arg:` / `aux:` prefixes) from an NDArray list file."""
    with open(path, "rb") as f:
        r = _Reader(f.read(), path)
    magic, _reserved = r.take("<QQ")
    if magic != LIST_MAGIC:
        raise ValueError(f"{path}: not an MXNet NDArray file (magic 0x{magic:X}, expected 0x{LIST_MAGIC:X})")
    count = r.take("<Q")
    arrays = [_read_array(r) for _ in range(count)]
    n_names = r.take("<Q")
    if n_names != count:
        raise ValueError(f"{path}: {count} arrays but {n_names} names")
    names = [r.take_bytes(r.take("<Q")).decode("utf-8") for _ in range(n_names)]
    return dict(zip(names, arrays, strict=True))
