"""Which frames the store has accepted, as one bitmap per 1024 consecutive frames.

A frame is ``(camera_id, frame_seq)`` with ``frame_seq = source id << 40 | position``
(:func:`emolens.stages.frame_seq`; a live source numbers from the wall clock, still one more
per frame). Frames of one source come in order, so a camera's frames fill a few blocks at a
time: one ``frames_seen_blocks`` row of 128 bytes remembers 1024 frames exactly, where the
former ``frames_seen`` kept one row (about 100 bytes with its index) per frame.

>>> key = block_of(5 << 40 | 2049)
>>> key, bit_of(5 << 40 | 2049)
((5, 2), 1)
>>> bits = set_bit(EMPTY, 1)
>>> has_bit(bits, 1), has_bit(bits, 2), len(bits)
(True, False, 128)
>>> sorted(positions(bits))
[1]
"""

from __future__ import annotations

from collections.abc import Iterator

POSITION_BITS = 40  # frame_seq = source id << 40 | position (emolens.stages.frame_seq builds it)
BLOCK_FRAMES = 1024
BLOCK_BYTES = BLOCK_FRAMES // 8
EMPTY = bytes(BLOCK_BYTES)
_POSITION_MASK = (1 << POSITION_BITS) - 1


def block_of(frame_seq: int) -> tuple[int, int]:
    """``(source_id, block)`` of a frame: the key of the row that remembers it."""
    return frame_seq >> POSITION_BITS, (frame_seq & _POSITION_MASK) // BLOCK_FRAMES


def bit_of(frame_seq: int) -> int:
    return frame_seq % BLOCK_FRAMES


def frame_seq_of(source_id: int, block: int, bit: int) -> int:
    return source_id << POSITION_BITS | block * BLOCK_FRAMES + bit


def has_bit(bits: bytes, bit: int) -> bool:
    return bool(bits[bit >> 3] & (1 << (bit & 7)))


def set_bit(bits: bytes, bit: int) -> bytes:
    out = bytearray(bits)
    out[bit >> 3] |= 1 << (bit & 7)
    return bytes(out)


def positions(bits: bytes) -> Iterator[int]:
    """The bits set, in order."""
    for i, byte in enumerate(bits):
        if byte:
            for j in range(8):
                if byte & (1 << j):
                    yield i * 8 + j
