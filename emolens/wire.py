"""Conversions between the library's dataclasses and the protobuf messages of protos/emolens/v1
(generated into ``emolens.v1`` by ``make protos``)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from emolens.errors import InputError
from emolens.observations import FrameObservations
from emolens.results import EMOTIONS, FaceResult
from emolens.store import Bucket, StatsRow
from emolens.v1 import analytics_pb2, observations_pb2


def to_timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    """A message's time; one outside years 1-9999 (or with nanos outside 0..999,999,999) is the
    sender's mistake: ``InputError``, not protobuf's bare ValueError.

    >>> from_timestamp(Timestamp(seconds=2**62))
    Traceback (most recent call last):
    ...
    emolens.errors.InputError: timestamp 4611686018427387904 s + 0 ns is outside years 1-9999
    """
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InputError(f"timestamp {ts.seconds} s + {ts.nanos} ns is outside years 1-9999") from exc


def face_to_pb(face: FaceResult) -> observations_pb2.Face:
    msg = observations_pb2.Face(
        box=observations_pb2.Box(x0=face.box[0], y0=face.box[1], x1=face.box[2], y1=face.box[3]),
        landmarks=[observations_pb2.Point(x=x, y=y) for x, y in face.landmarks],
        detection_score=face.detection_score,
        quality=face.quality,
        low_quality=face.low_quality,
        smile=face.smile,
        emotions=[face.emotions[e] for e in EMOTIONS],
        label=face.label,
        yaw_deg=face.yaw_deg,
    )
    if face.track_id is not None:
        msg.track_id = face.track_id
    return msg


def face_from_pb(msg: observations_pb2.Face) -> FaceResult:
    return FaceResult(
        box=(msg.box.x0, msg.box.y0, msg.box.x1, msg.box.y1),
        landmarks=[(p.x, p.y) for p in msg.landmarks],
        detection_score=msg.detection_score,
        quality=msg.quality,
        low_quality=msg.low_quality,
        smile=msg.smile,
        emotions=dict(zip(EMOTIONS, msg.emotions, strict=True)),
        track_id=msg.track_id if msg.HasField("track_id") else None,
        yaw_deg=msg.yaw_deg,
    )


def observations_to_pb(obs: FrameObservations, zone: str = "", site: str = "") -> observations_pb2.FrameObservations:
    return observations_pb2.FrameObservations(
        camera_id=obs.camera_id,
        frame_seq=obs.frame_seq,
        captured_at=to_timestamp(obs.timestamp),
        faces=[face_to_pb(f) for f in obs.faces],
        zone=zone,
        site=site,
    )


def observations_from_pb(msg: observations_pb2.FrameObservations) -> FrameObservations:
    return FrameObservations(
        camera_id=msg.camera_id,
        frame_seq=msg.frame_seq,
        timestamp=from_timestamp(msg.captured_at),
        faces=[face_from_pb(f) for f in msg.faces],
    )


def bucket_to_pb(bucket: Bucket, k: int) -> analytics_pb2.Bucket:
    msg = analytics_pb2.Bucket(camera_id=bucket.camera_id, minute=to_timestamp(bucket.minute))
    if bucket.suppressed(k):
        msg.suppressed = True
        return msg
    msg.frames = bucket.frames
    msg.faces = bucket.faces
    msg.tracks = bucket.tracks
    msg.low_quality = bucket.low_quality
    msg.smiles = bucket.smiles
    msg.smile_sum = bucket.smile_sum
    msg.mean_quality = bucket.mean_quality
    msg.emotion_counts.extend(bucket.counts[e] for e in EMOTIONS)
    msg.emotion_prob_sums.extend(bucket.prob_sums[e] for e in EMOTIONS)
    return msg


def stats_row_to_pb(row: StatsRow) -> analytics_pb2.StatsRow:
    msg = analytics_pb2.StatsRow(
        site=row.site,
        zone=row.zone,
        camera_id=row.camera_id,
        period_start=to_timestamp(row.period_start),
        cameras=row.cameras,
        frames=row.frames,
        faces=row.faces,
        visitors=row.visitors,
        low_quality=row.low_quality,
        smiles=row.smiles,
        emotion_counts=[row.emotions[e] for e in EMOTIONS],
    )
    for name in ("smile_rate", "mean_quality", "mean_dwell_s"):
        value = getattr(row, name)
        if value is not None:
            setattr(msg, name, value)
    return msg
