import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from emolens.v1 import observations_pb2 as _observations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnalyzeImageRequest(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    def __init__(self, image: _Optional[bytes] = ...) -> None: ...

class AnalyzeImageResponse(_message.Message):
    __slots__ = ("faces",)
    FACES_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[_observations_pb2.Face]
    def __init__(self, faces: _Optional[_Iterable[_Union[_observations_pb2.Face, _Mapping]]] = ...) -> None: ...

class StreamFrame(_message.Message):
    __slots__ = ("image", "frame_seq")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FRAME_SEQ_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    frame_seq: int
    def __init__(self, image: _Optional[bytes] = ..., frame_seq: _Optional[int] = ...) -> None: ...

class StreamResult(_message.Message):
    __slots__ = ("frame_seq", "faces")
    FRAME_SEQ_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    frame_seq: int
    faces: _containers.RepeatedCompositeFieldContainer[_observations_pb2.Face]
    def __init__(self, frame_seq: _Optional[int] = ..., faces: _Optional[_Iterable[_Union[_observations_pb2.Face, _Mapping]]] = ...) -> None: ...

class QueryStatsRequest(_message.Message):
    __slots__ = ("camera_id", "zone", "site", "since", "until")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    zone: str
    site: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, camera_id: _Optional[str] = ..., zone: _Optional[str] = ..., site: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Bucket(_message.Message):
    __slots__ = ("camera_id", "minute", "suppressed", "frames", "faces", "tracks", "low_quality", "smiles", "smile_sum", "mean_quality", "emotion_counts", "emotion_prob_sums")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    MINUTE_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    LOW_QUALITY_FIELD_NUMBER: _ClassVar[int]
    SMILES_FIELD_NUMBER: _ClassVar[int]
    SMILE_SUM_FIELD_NUMBER: _ClassVar[int]
    MEAN_QUALITY_FIELD_NUMBER: _ClassVar[int]
    EMOTION_COUNTS_FIELD_NUMBER: _ClassVar[int]
    EMOTION_PROB_SUMS_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    minute: _timestamp_pb2.Timestamp
    suppressed: bool
    frames: int
    faces: int
    tracks: int
    low_quality: int
    smiles: int
    smile_sum: float
    mean_quality: float
    emotion_counts: _containers.RepeatedScalarFieldContainer[int]
    emotion_prob_sums: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, camera_id: _Optional[str] = ..., minute: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., suppressed: _Optional[bool] = ..., frames: _Optional[int] = ..., faces: _Optional[int] = ..., tracks: _Optional[int] = ..., low_quality: _Optional[int] = ..., smiles: _Optional[int] = ..., smile_sum: _Optional[float] = ..., mean_quality: _Optional[float] = ..., emotion_counts: _Optional[_Iterable[int]] = ..., emotion_prob_sums: _Optional[_Iterable[float]] = ...) -> None: ...

class QueryStatsResponse(_message.Message):
    __slots__ = ("buckets", "k_anonymity")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    K_ANONYMITY_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[Bucket]
    k_anonymity: int
    def __init__(self, buckets: _Optional[_Iterable[_Union[Bucket, _Mapping]]] = ..., k_anonymity: _Optional[int] = ...) -> None: ...

class WatchLiveRequest(_message.Message):
    __slots__ = ("camera_id",)
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    def __init__(self, camera_id: _Optional[str] = ...) -> None: ...

class LiveCounters(_message.Message):
    __slots__ = ("camera_id", "updated_at", "frames", "faces", "smiles", "emotion_counts")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    SMILES_FIELD_NUMBER: _ClassVar[int]
    EMOTION_COUNTS_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    updated_at: _timestamp_pb2.Timestamp
    frames: int
    faces: int
    smiles: int
    emotion_counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, camera_id: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., frames: _Optional[int] = ..., faces: _Optional[int] = ..., smiles: _Optional[int] = ..., emotion_counts: _Optional[_Iterable[int]] = ...) -> None: ...
