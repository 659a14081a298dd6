"""A strict reader and writer of the IDX format (the MNIST files).

Layout: magic ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 sizes, then the data
in row-major big-endian order. Files may be gzip-compressed (detected by their first bytes, not
their name). Sizes are validated against the actual data length *before* anything is allocated.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDXFormatError", "read_idx", "write_idx"]

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).newbyteorder("=").str.lstrip("<>|="): k for k, v in _DTYPES.items()}
_MAX_BYTES = 2**34  # 16 GiB: nothing legitimate in IDX is larger


class IDXFormatError(ValueError):
    """The file is not a valid IDX file (bad magic, dtype, sizes, truncated or corrupt)."""


def _raw_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as handle:
                return handle.read(_MAX_BYTES + 1)
        except (OSError, EOFError, zlib.error) as error:
            raise IDXFormatError(f"{path}: corrupt gzip stream ({error})") from None
    return path.read_bytes()


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip or not) into a numpy array of its declared dtype and shape."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    data = _raw_bytes(path)
    if len(data) < 4:
        raise IDXFormatError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    zero1, zero2, code, ndim = data[:4]
    if zero1 != 0 or zero2 != 0:
        raise IDXFormatError(f"{path}: bad magic number {data[:4].hex()} (expected 0000xxyy)")
    if code not in _DTYPES:
        raise IDXFormatError(f"{path}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise IDXFormatError(f"{path}: IDX file declares zero dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{path}: truncated header ({len(data)} bytes, need {header})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[code])
    expected = math.prod(shape) * dtype.itemsize
    actual = len(data) - header
    if expected != actual:
        raise IDXFormatError(
            f"{path}: header declares shape {shape} ({expected} bytes) but the file holds {actual} data bytes"
            + (" (truncated)" if actual < expected else "")
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as IDX (gzip when ``compress`` or when the name ends in ``.gz``)."""
    path = Path(path)
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=").str.lstrip("<>|=")
    if key not in _CODES:
        raise ValueError(f"dtype {array.dtype} has no IDX code; use uint8, int8, int16, int32, float32 or float64")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1..255 dimensions, got {array.ndim}")
    code = _CODES[key]
    payload = (
        bytes([0, 0, code, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(np.dtype(_DTYPES[code])).tobytes()
    )
    compress = path.suffix == ".gz" if compress is None else compress
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path
