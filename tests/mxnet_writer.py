"""Writes MXNet NDArray-list files in each of their three layouts, to test the reader on files
that are not the V2 one MXNet itself wrote (tests/data/ademxapp_a1_names_shrunk.params)."""
import struct

import numpy as np

from network.mxnet_params import DTYPES, LIST_MAGIC, V1_MAGIC, V2_MAGIC


def write_ndarray_file(path, arrays, layout="v2"):
    """Write {name: array} in one of the three layouts."""
    flags = {np.dtype(v): k for k, v in DTYPES.items()}
    out = [struct.pack("<QQQ", LIST_MAGIC, 0, len(arrays))]
    for a in arrays.values():
        a = np.ascontiguousarray(a)
        if layout == "v2":
            out.append(struct.pack("<IiI", V2_MAGIC, 0, a.ndim) + struct.pack(f"<{a.ndim}q", *a.shape))
        elif layout == "v1":
            out.append(struct.pack("<II", V1_MAGIC, a.ndim) + struct.pack(f"<{a.ndim}q", *a.shape))
        elif layout == "legacy":
            out.append(struct.pack("<I", a.ndim) + struct.pack(f"<{a.ndim}I", *a.shape))
        else:
            raise ValueError(f"unknown layout {layout!r}")
        out.append(struct.pack("<3i", 1, 0, flags[a.dtype]) + a.astype(a.dtype.newbyteorder("<")).tobytes())
    out.append(struct.pack("<Q", len(arrays)))
    for name in arrays:
        b = name.encode("utf-8")
        out.append(struct.pack("<Q", len(b)) + b)
    with open(path, "wb") as f:
        f.write(b"".join(out))
