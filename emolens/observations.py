"""The unit that travels from detection to aggregation: all faces of one frame of one camera."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from emolens.errors import InputError
from emolens.results import EMOTIONS, FaceResult
from emolens.settings import check_time

MAX_ID_LENGTH = 128  # camera, zone and site ids; the SQL columns are this wide
MAX_FACES_PER_FRAME = 1000


def check_id(value: str, what: str) -> str:
    """``value`` when a camera, zone or site id can be it (no NUL, which PostgreSQL's text
    cannot hold; at most MAX_ID_LENGTH characters, the columns' width), else ``InputError``
    quoting at most MAX_ID_LENGTH characters of it: a 100 KB id gives a short message.

    >>> check_id("cam-1", "camera_id")
    'cam-1'
    >>> check_id("x" * 100_000, "camera_id")
    Traceback (most recent call last):
    ...
    emolens.errors.InputError: camera_id of 100,000 characters (more than 128): 'xxx...xxx'...
    """
    if "\x00" in value:
        raise InputError(f"{what} {shown(value)!r} holds a NUL character")
    if len(value) > MAX_ID_LENGTH:
        raise InputError(f"{what} of {len(value):,} characters (more than {MAX_ID_LENGTH}): {shown(value)!r}...")
    return value


def shown(value: str) -> str:
    """An id as messages and logs may quote it: cut to MAX_ID_LENGTH characters."""
    return value[:MAX_ID_LENGTH]


@dataclass(frozen=True)
class FrameObservations:
    camera_id: str
    frame_seq: int  # monotonic per camera; (camera_id, frame_seq) makes redelivery idempotent
    timestamp: datetime  # UTC, when the frame was captured
    faces: list[FaceResult]

    def minute(self) -> datetime:
        """The per-minute bucket this frame counts in (naive UTC)."""
        ts = self.timestamp.astimezone(UTC) if self.timestamp.tzinfo else self.timestamp
        return ts.replace(second=0, microsecond=0, tzinfo=None)

    def validate(self) -> FrameObservations:
        """Refuse what no store can hold (an aggregator sends such a message to its
        dead-letter topic instead of failing every other camera's batch)."""
        if not self.camera_id or len(self.camera_id) > MAX_ID_LENGTH:
            raise InputError(f"camera id must be 1-{MAX_ID_LENGTH} characters, got {len(self.camera_id)}")
        if "\x00" in self.camera_id:  # PostgreSQL's text cannot hold it
            raise InputError("camera id holds a NUL character")
        check_time(self.timestamp, "captured_at")  # what the store's partitions and rollups hold
        if not 0 <= self.frame_seq < 1 << 63:
            raise InputError(f"frame_seq {self.frame_seq} outside 0..2^63")
        if len(self.faces) > MAX_FACES_PER_FRAME:
            raise InputError(f"{len(self.faces)} faces in one frame (at most {MAX_FACES_PER_FRAME})")
        for face in self.faces:
            if set(face.emotions) != set(EMOTIONS):
                raise InputError("a face's emotions are not the contract's seven")
            if face.track_id is not None and not 0 <= face.track_id < 1 << 63:
                raise InputError(f"track id {face.track_id} outside 0..2^63")
            # What the store sums: one NaN would make a whole minute's sum NaN (NULL in SQL, which
            # the columns refuse), one huge value would swamp it. Probabilities and quality are in [0, 1].
            for name, value in (("smile", face.smile), ("quality", face.quality), *face.emotions.items()):
                if not 0.0 <= value <= 1.0:  # NaN fails this too
                    raise InputError(f"a face's {name} is {value}, outside [0, 1]")
        return self


@dataclass
class Totals:
    """A camera's counts over all its stored frames: what the live counters show, rebuilt
    from the store when the live state lost them (a Redis restart or outage)."""

    camera_id: str
    frames: int = 0
    faces: int = 0
    smiles: int = 0
    emotions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EMOTIONS, 0))
