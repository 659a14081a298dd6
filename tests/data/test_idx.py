import gzip
import struct
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fptt.data import IDXFormatError, read_idx, write_idx


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip(tmp_path, name, dtype):
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    path = write_idx(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 5)
    np.testing.assert_array_equal(back, array)


def test_gzip_detected_by_content_not_name(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "plain", array, compress=True)), array)


def test_truncated(tmp_path):
    path = write_idx(tmp_path / "a", np.arange(100, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(IDXFormatError, match="truncated"):
        read_idx(path)


@pytest.mark.parametrize("header", [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00", b"\x00\x00"])
def test_bad_headers(tmp_path, header):
    path = tmp_path / "bad"
    path.write_bytes(header + b"\x00\x00\x00\x01" + b"\x05")
    with pytest.raises(IDXFormatError):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_huge_claimed_size_fails_fast(tmp_path, compress):
    payload = b"\x00\x00\x08\x02" + struct.pack(">2I", 10**6, 10**6) + b"\x00" * 16  # claims 10**12 items
    path = tmp_path / "huge"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    start = time.perf_counter()
    with pytest.raises(IDXFormatError, match="declares shape"):
        read_idx(path)
    assert time.perf_counter() - start < 1.0


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_or_format_error(path):
    try:
        result = read_idx(path)
    except (IDXFormatError, FileNotFoundError):
        return None
    assert isinstance(result, np.ndarray)
    return result


@_SETTINGS
@given(data=st.binary(max_size=64), gz=st.booleans())
def test_fuzz_random_bytes(tmp_path, data, gz):
    path = tmp_path / "fuzz"
    path.write_bytes(gzip.compress(data) if gz else data)
    _read_or_format_error(path)


_VALID = b"\x00\x00\x08\x02" + struct.pack(">2I", 3, 4) + bytes(range(12))


@_SETTINGS
@given(
    gz=st.booleans(),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255), st.sampled_from(["set", "insert", "delete"])), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 80)),
)
def test_fuzz_mutated_valid_file(tmp_path, gz, edits, cut):
    data = bytearray(gzip.compress(_VALID, mtime=0) if gz else _VALID)
    for position, value, kind in edits:
        position %= len(data) + 1
        if kind == "insert":
            data.insert(position, value)
        elif position < len(data):
            if kind == "set":
                data[position] = value
            else:
                del data[position]
    if cut is not None:
        data = data[:cut]
    path = tmp_path / "mutated"
    path.write_bytes(bytes(data))
    _read_or_format_error(path)
