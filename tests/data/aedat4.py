"""A minimal AEDAT4 writer for tests: uncompressed, one event stream (the format of CIFAR10-DVS's
``.aedat4`` files, read by tonic through the ``aedat`` decoder).

Layout (little endian): the magic ``#!AER-DAT4.0\\r\\n``; a u32 length and an ``IOHeader``
flatbuffer (identifier ``IOHE``; compression None, file_data_position -1, an XML description of
stream 0: ``typeIdentifier`` EVTS, ``sizeX``/``sizeY``); then packets, each a u32 stream id, a u32
length and a *size-prefixed* ``EventPacket`` flatbuffer (identifier ``EVTS``) whose vector holds
16-byte structs {t: i64, x: i16, y: i16, on: bool, 3 bytes padding}. The two flatbuffers are
written field by field here (positions relative to each buffer's start, aligned as the verifier
expects), so the tests need no flatbuffers package.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = b"#!AER-DAT4.0\r\n"


def _description(width: int, height: int) -> bytes:
    stream = "/mainloop/Recorder/outInfo/0/"
    return (
        '<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
        f'<node name="0" path="{stream}">'
        '<attr key="compression" type="string">NONE</attr>'
        '<attr key="originalModuleName" type="string">capture</attr>'
        '<attr key="originalOutputName" type="string">events</attr>'
        '<attr key="typeIdentifier" type="string">EVTS</attr>'
        f'<node name="info" path="{stream}info/">'
        f'<attr key="sizeX" type="int">{width}</attr><attr key="sizeY" type="int">{height}</attr>'
        '</node></node></node></dv>'
    ).encode()


def ioheader(width: int, height: int) -> bytes:
    """Root offset, "IOHE", vtable (only ``description`` set), table, string."""
    text = _description(width, height)
    vtable = struct.pack("<5H", 10, 8, 0, 0, 4)  # vtable size, table size, compression, position, description
    table_at, string_at = 20, 28
    buffer = struct.pack("<I", table_at) + b"IOHE" + vtable + b"\0\0"
    buffer += struct.pack("<iI", table_at - 8, string_at - (table_at + 4))  # soffset to vtable, offset to string
    buffer += struct.pack("<I", len(text)) + text + b"\0"
    return buffer + b"\0" * (-len(buffer) % 4)


def event_packet(t: np.ndarray, x: np.ndarray, y: np.ndarray, on: np.ndarray) -> bytes:
    """A size-prefixed EventPacket: prefix, root offset, "EVTS", vtable, table, vector of structs."""
    events = np.zeros(len(t), dtype=np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"),
                                              ("pad", "V3")]))
    events["t"], events["x"], events["y"], events["on"] = t, x, y, on
    # positions below are those of the whole buffer, size prefix included (body offset + 4)
    body = struct.pack("<I", 16) + b"EVTS"  # at 4: offset to the table at 20; at 8: the identifier
    body += struct.pack("<3H", 6, 8, 4) + b"\0\0"  # vtable at 12: its size 6, table size 8, field 0 at +4
    body += struct.pack("<iI", 20 - 12, 28 - 24)  # table at 20: soffset to the vtable; at 24: offset to the vector
    body += struct.pack("<I", len(events)) + events.tobytes()  # vector length at 28; 16-byte structs from 32
    return struct.pack("<I", len(body)) + body


def write_aedat4(path: str | Path, t, x, y, on, width: int = 128, height: int = 128, packets: int = 2) -> None:
    """Write events (t in µs, x, y, on) to ``path`` as an uncompressed AEDAT4 file in ``packets`` packets."""
    header = ioheader(width, height)
    chunks = np.array_split(np.arange(len(t)), packets)
    with open(path, "wb") as handle:
        handle.write(MAGIC + struct.pack("<I", len(header)) + header)
        for index in chunks:
            packet = event_packet(np.asarray(t)[index], np.asarray(x)[index], np.asarray(y)[index],
                                  np.asarray(on)[index])
            handle.write(struct.pack("<II", 0, len(packet)) + packet)
