"""A strict reader and writer of the IDX format (the MNIST files).

Layout: magic ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 sizes, then the data
in row-major big-endian order. Files may be gzip-compressed (detected by their first bytes, not
their name). Sizes are validated against the actual data length *before* anything is allocated,
and a gzip stream is inflated only up to the size its header declares.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["IDXFormatError", "read_idx", "write_idx"]

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).newbyteorder("=").str.lstrip("<>|="): k for k, v in _DTYPES.items()}
_MAX_BYTES = 2**34  # 16 GiB: nothing legitimate in IDX is larger
_CHUNK = 1 << 20


class IDXFormatError(ValueError):
    """The file is not a valid IDX file (bad magic, dtype, sizes, truncated or corrupt)."""


def _read_exactly(handle: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, read in chunks (memory grows with what the stream holds, never with a
    size a header merely claims)."""
    chunks, remaining = [], size
    while remaining > 0:
        chunk = handle.read(min(remaining, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip or not) into a numpy array of its declared dtype and shape.

    The header is read and validated first; the data are then read in chunks up to the declared
    size plus one byte, so neither a header claiming a huge shape nor a gzip stream inflating far
    beyond its header allocates more than the data actually present (at most the declared size).
    Raises :class:`IDXFormatError` for any malformed, truncated or oversized file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    try:
        with _open(path) as handle:
            magic = _read_exactly(handle, 4)
            if len(magic) < 4:
                raise IDXFormatError(f"{path}: too short for an IDX header ({len(magic)} bytes)")
            zero1, zero2, code, ndim = magic
            if zero1 != 0 or zero2 != 0:
                raise IDXFormatError(f"{path}: bad magic number {magic.hex()} (expected 0000xxyy)")
            if code not in _DTYPES:
                raise IDXFormatError(f"{path}: unknown IDX dtype code 0x{code:02x}")
            if ndim == 0:
                raise IDXFormatError(f"{path}: IDX file declares zero dimensions")
            sizes = _read_exactly(handle, 4 * ndim)
            if len(sizes) < 4 * ndim:
                raise IDXFormatError(f"{path}: truncated header ({4 + len(sizes)} bytes, need {4 + 4 * ndim})")
            shape = struct.unpack(f">{ndim}I", sizes)
            dtype = np.dtype(_DTYPES[code])
            expected = math.prod(shape) * dtype.itemsize
            if expected > _MAX_BYTES:
                raise IDXFormatError(
                    f"{path}: header declares shape {shape} ({expected} bytes), more than the "
                    f"{_MAX_BYTES} bytes an IDX file may hold"
                )
            data = _read_exactly(handle, expected + 1)  # one more byte reveals trailing data
    except (OSError, EOFError, zlib.error) as error:
        raise IDXFormatError(f"{path}: corrupt gzip stream ({error})") from None
    actual = len(data)
    if expected != actual:
        more = " or more" if actual > expected else ""
        raise IDXFormatError(
            f"{path}: header declares shape {shape} ({expected} bytes) but the file holds {actual}{more} data bytes"
            + (" (truncated)" if actual < expected else "")
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
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
