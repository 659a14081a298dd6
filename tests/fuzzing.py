"""Byte mutations shared by the fuzz tests of untrusted files."""
from __future__ import annotations

from typing import Optional, Sequence


def mutate(data: bytes, edits: Sequence[tuple[int, int, str]], cut: Optional[int]) -> bytes:
    """Apply ``(position, byte, "set"|"insert"|"delete")`` edits (positions wrap), then truncate at ``cut``."""
    buffer = bytearray(data)
    for position, value, kind in edits:
        position %= len(buffer)
        if kind == "set":
            buffer[position] = value
        elif kind == "insert":
            buffer.insert(position, value)
        else:
            del buffer[position]
    return bytes(buffer[:cut] if cut is not None else buffer)
