"""Untrusted data files (issue 9): sizes are validated before anything is allocated, and random,
mutated or hostile files give only the documented exceptions. docs/RELIABILITY.md counts them.

IDX is also fuzzed in test_idx.py (random and mutated bytes, 150 examples each).
"""
from __future__ import annotations

import gzip
import io
import os
import struct
import time
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fptt.data import SHD, DVSGesture, EventFileError, IDXFormatError, SHDFormatError, events_to_frames, read_idx
from fptt.data.dvs import check_npy_events

from ..fuzzing import mutate
from . import shd_fuzz
from .test_dvs import _gesture_layout

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------------------------- IDX
def test_idx_gzip_bomb_is_not_inflated_beyond_its_header(tmp_path):
    """A header declaring 10 bytes followed by 64 MiB of zeros (a 64 KiB gzip file) fails after
    reading 11 bytes: the stream is never inflated in full."""
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 10) + bytes(64 * 2**20), 9))
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(IDXFormatError, match=r"declares shape \(10,\) \(10 bytes\) but the file holds 11 or more"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20 and time.perf_counter() - started < 2.0


def test_idx_header_beyond_the_size_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(b"\x00\x00\x0e\x03" + struct.pack(">3I", 2**20, 2**20, 2**20))  # 8 PiB of float64
    with pytest.raises(IDXFormatError, match=r"more than the 17179869184 bytes an IDX file may hold"):
        read_idx(path)


# ---------------------------------------------------------------------------------- SHD (HDF5)
@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch):
    monkeypatch.delenv("FPTT_DATA", raising=False)


def test_shd_file_declaring_10_to_the_12_digits_is_refused_without_reading(tmp_path):
    h5py = pytest.importorskip("h5py")
    count = 10**12
    with h5py.File(tmp_path / "shd_train.h5", "w") as handle:  # a 3 KB file: chunked, never written
        handle.create_dataset("spikes/times", (count,), dtype=h5py.vlen_dtype(np.float32), chunks=(1024,))
        handle.create_dataset("spikes/units", (count,), dtype=h5py.vlen_dtype(np.uint16), chunks=(1024,))
        handle.create_dataset("labels", (count,), dtype=np.uint16, chunks=(1024,))
    assert (tmp_path / "shd_train.h5").stat().st_size < 2**16
    started = time.perf_counter()
    with pytest.raises(SHDFormatError, match=r"declares 1000000000000 digits, more than the 10000000 .* nothing was read"):
        SHD(tmp_path)
    assert time.perf_counter() - started < 2.0


_NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-5, 2000))


@FUZZ
@given(
    missing=st.sets(st.sampled_from(["spikes/times", "spikes/units", "labels"]), max_size=1),
    group_instead=st.sampled_from([None, "labels", "spikes/times"]),
    label_dtype=st.sampled_from(["u2", "i8", "f4", "S3"]),
    lengths=st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 4)),
    labels=st.lists(st.integers(-3, 25), min_size=4, max_size=4),
    spikes=st.lists(st.lists(st.tuples(_NUMBERS, st.integers(0, 800)), max_size=6), min_size=4, max_size=4),
    speaker_length=st.integers(0, 5),
    keys=st.one_of(st.none(), st.lists(st.binary(max_size=4), max_size=3)),
)
def test_fuzz_hostile_shd_layouts_give_only_shd_format_errors(tmp_path, missing, group_instead, label_dtype, lengths,
                                                             labels, spikes, speaker_length, keys):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "shd_train.h5"
    with h5py.File(path, "w") as handle:
        if "spikes/times" not in missing and group_instead != "spikes/times":
            times = handle.create_dataset("spikes/times", (lengths[0],), dtype=h5py.vlen_dtype(np.float32))
            for index in range(lengths[0]):
                times[index] = np.array([t for t, _ in spikes[index]], dtype=np.float32)
        if "spikes/units" not in missing:
            units = handle.create_dataset("spikes/units", (lengths[1],), dtype=h5py.vlen_dtype(np.uint16))
            for index in range(lengths[1]):
                units[index] = np.array([u for _, u in spikes[index]], dtype=np.uint16)
        if "labels" not in missing and group_instead != "labels":
            values = np.array(labels[: lengths[2]])
            handle.create_dataset("labels", data=values.astype("S3") if label_dtype == "S3" else values.astype(label_dtype))
        if group_instead is not None and group_instead not in missing:
            handle.create_group(group_instead)
        handle.create_dataset("extra/speaker", data=np.arange(speaker_length, dtype=np.uint16))
        if keys is not None:
            handle.create_dataset("extra/keys", data=np.array(keys, dtype="S4"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = SHD(tmp_path, num_bins=3)
            for index in range(len(dataset)):
                x, y = dataset[index]
                assert x.shape == (3, 700) and bool(torch.isfinite(x).all()) and bool((x >= 0).all())
                assert 0 <= int(y) < 20
            dataset.close()
    except SHDFormatError:
        pass


@FUZZ
@given(data=st.binary(max_size=256), hdf5_signature=st.booleans())
def test_fuzz_random_bytes_are_shd_format_errors(tmp_path, data, hdf5_signature):
    pytest.importorskip("h5py")
    (tmp_path / "shd_train.h5").write_bytes((b"\x89HDF\r\n\x1a\n" if hdf5_signature else b"") + data)
    with pytest.raises(SHDFormatError):
        SHD(tmp_path)


SHD_MUTANTS = 40


def test_fuzz_mutated_shd_files_raise_only_shd_format_error(tmp_path):
    """Byte-level mutants of a valid file, read in a watched child process (libhdf5 itself may loop
    on a crafted file; see shd_fuzz.py): every exception the reader raises is SHDFormatError."""
    pytest.importorskip("h5py")
    roots = shd_fuzz.write_mutants(shd_fuzz.good_file(tmp_path), tmp_path / "mutants", SHD_MUTANTS, seed=0)
    outcomes = shd_fuzz.run(roots, timeout=3.0)
    unexpected = {str(root): outcome for root, outcome in outcomes.items() if outcome.startswith("unexpected")}
    assert not unexpected, unexpected
    assert len(outcomes) == SHD_MUTANTS and "SHDFormatError" in outcomes.values()


# ---------------------------------------------------------------------------------- event files
def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_npy_event_file_declaring_10_to_the_12_events_is_refused_without_allocating(tmp_path):
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 4), np.int64))
    header["shape"] = (10**12, 4)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    path = tmp_path / "0.npy"
    path.write_bytes(buffer.getvalue() + bytes(64))
    with pytest.raises(EventFileError,
                       match=r"declares shape \(1000000000000, 4\) \(32000000000000 bytes\) but the file holds 64"):
        check_npy_events(path)


_GOOD_NPY = _npy(np.arange(40, dtype=np.int64).reshape(10, 4))


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**4), st.integers(0, 255), st.sampled_from(["set", "insert", "delete"])),
                      min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 500)))
def test_fuzz_mutated_npy_event_files_are_checked_before_loading(tmp_path, edits, cut):
    path = tmp_path / "0.npy"
    path.write_bytes(mutate(_GOOD_NPY, edits, cut))
    try:
        shape = check_npy_events(path)
    except EventFileError:
        return
    loaded = np.load(path)  # what tonic then does: must agree with the checked header
    assert loaded.shape == shape and loaded.shape[1] == 4


_VALUES = st.one_of(st.integers(-3, 20), st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300, -1e300]))


@settings(max_examples=100, deadline=None)
@given(events=st.lists(st.tuples(_VALUES, _VALUES, _VALUES, _VALUES), max_size=12),
       time_dtype=st.sampled_from(["f8", "f4", "i8"]), frames=st.integers(1, 4))
def test_fuzz_events_to_frames_counts_exactly_the_valid_events(events, time_dtype, frames):
    """NaN/Inf/huge times and coordinates: an event is counted once if it is on the sensor and
    has a finite time, otherwise dropped; never a crash, never a wrong bin count."""
    array = np.zeros(len(events), dtype=[("x", "f8"), ("y", "f8"), ("t", time_dtype), ("p", "f8")])
    with np.errstate(all="ignore"):
        for index, event in enumerate(events):
            for name, value in zip("xytp", event):
                array[index][name] = 0 if time_dtype == "i8" and name == "t" and not isinstance(value, int) else value
    counts = events_to_frames(array, (16, 8, 2), frames)
    x, y, t = array["x"], array["y"], array["t"].astype(np.float64)
    valid = (x >= 0) & (x < 16) & (y >= 0) & (y < 8) & np.isfinite(t)
    assert counts.shape == (frames, 2, 8, 16) and counts.sum() == valid.sum()


class _RunsCode:
    def __init__(self, *arguments) -> None:
        self.arguments = arguments

    def __reduce__(self):
        return os.system, self.arguments


def test_dvs_cache_entries_of_the_wrong_shape_or_with_code_are_recomputed(tmp_path):
    pytest.importorskip("tonic")
    _gesture_layout(tmp_path)
    dataset = DVSGesture(tmp_path, "train", num_frames=8)
    x, _ = dataset[3]
    (cache,) = list((tmp_path / ".fptt_cache").glob("dvsgesture-*/*.pt"))
    marker = tmp_path / "code_ran"
    for bad in (torch.zeros(3, 2), torch.zeros(8, 2, 32, 32, dtype=torch.float64), _RunsCode(f"touch {marker}")):
        torch.save(bad, cache)
        assert torch.equal(DVSGesture(tmp_path, "train", num_frames=8)[3][0], x)
    cache.write_bytes(b"garbage")
    assert torch.equal(DVSGesture(tmp_path, "train", num_frames=8)[3][0], x)
    assert not marker.exists()


def test_dvs_recording_with_a_lying_header_is_refused_naming_the_file(tmp_path):
    pytest.importorskip("tonic")
    _gesture_layout(tmp_path)
    dataset = DVSGesture(tmp_path, "train", num_frames=4, cache=False)
    path = dataset._reader().data[dataset.indices[2]]
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 4), np.int64))
    header["shape"] = (10**12, 4)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    with open(path, "wb") as handle:
        handle.write(buffer.getvalue() + bytes(32))
    with pytest.raises(EventFileError, match=rf"{path}: header declares shape \(1000000000000, 4\)"):
        dataset[2]
    assert dataset[3][0].shape == (4, 2048)  # the other recordings still read
