import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from emolens.v1 import observations_pb2 as _observations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Granularity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRANULARITY_UNSPECIFIED: _ClassVar[Granularity]
    GRANULARITY_MINUTE: _ClassVar[Granularity]
    GRANULARITY_HOUR: _ClassVar[Granularity]
    GRANULARITY_DAY: _ClassVar[Granularity]

class Grouping(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GROUPING_UNSPECIFIED: _ClassVar[Grouping]
    GROUPING_CAMERA: _ClassVar[Grouping]
    GROUPING_ZONE: _ClassVar[Grouping]
    GROUPING_SITE: _ClassVar[Grouping]
GRANULARITY_UNSPECIFIED: Granularity
GRANULARITY_MINUTE: Granularity
GRANULARITY_HOUR: Granularity
GRANULARITY_DAY: Granularity
GROUPING_UNSPECIFIED: Grouping
GROUPING_CAMERA: Grouping
GROUPING_ZONE: Grouping
GROUPING_SITE: Grouping

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
    __slots__ = ("camera_id", "zone", "site", "since", "until", "granularity", "group_by", "page_size", "page_token")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    zone: str
    site: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    granularity: Granularity
    group_by: Grouping
    page_size: int
    page_token: str
    def __init__(self, camera_id: _Optional[str] = ..., zone: _Optional[str] = ..., site: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., granularity: _Optional[_Union[Granularity, str]] = ..., group_by: _Optional[_Union[Grouping, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class StatsRow(_message.Message):
    __slots__ = ("site", "zone", "camera_id", "period_start", "cameras", "frames", "faces", "visitors", "low_quality", "smiles", "smile_rate", "mean_quality", "mean_dwell_s", "emotion_counts")
    SITE_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    VISITORS_FIELD_NUMBER: _ClassVar[int]
    LOW_QUALITY_FIELD_NUMBER: _ClassVar[int]
    SMILES_FIELD_NUMBER: _ClassVar[int]
    SMILE_RATE_FIELD_NUMBER: _ClassVar[int]
    MEAN_QUALITY_FIELD_NUMBER: _ClassVar[int]
    MEAN_DWELL_S_FIELD_NUMBER: _ClassVar[int]
    EMOTION_COUNTS_FIELD_NUMBER: _ClassVar[int]
    site: str
    zone: str
    camera_id: str
    period_start: _timestamp_pb2.Timestamp
    cameras: int
    frames: int
    faces: int
    visitors: int
    low_quality: int
    smiles: int
    smile_rate: float
    mean_quality: float
    mean_dwell_s: float
    emotion_counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, site: _Optional[str] = ..., zone: _Optional[str] = ..., camera_id: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cameras: _Optional[int] = ..., frames: _Optional[int] = ..., faces: _Optional[int] = ..., visitors: _Optional[int] = ..., low_quality: _Optional[int] = ..., smiles: _Optional[int] = ..., smile_rate: _Optional[float] = ..., mean_quality: _Optional[float] = ..., mean_dwell_s: _Optional[float] = ..., emotion_counts: _Optional[_Iterable[int]] = ...) -> None: ...

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
    __slots__ = ("buckets", "k_anonymity", "rows", "next_page_token", "suppressed")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    K_ANONYMITY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[Bucket]
    k_anonymity: int
    rows: _containers.RepeatedCompositeFieldContainer[StatsRow]
    next_page_token: str
    suppressed: int
    def __init__(self, buckets: _Optional[_Iterable[_Union[Bucket, _Mapping]]] = ..., k_anonymity: _Optional[int] = ..., rows: _Optional[_Iterable[_Union[StatsRow, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., suppressed: _Optional[int] = ...) -> None: ...

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
