"""Reading what users point emolens at: images, folders, video files, streams and webcams.

Every failure is an ``InputError`` with a one-line message naming the input.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

import cv2
import numpy as np

from emolens import logs
from emolens.errors import ImageTooLargeError, InputError
from emolens.retry import Backoff
from emolens.sampling import RateSampler
from emolens.settings import redact_url

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://")
# Why a frame read from a source is not passed on (the ``reason`` label of emolens_frames_shed_total).
DROP_RATE = "rate"  # sampled out: the source delivers more than the target fps
DROP_UNREADABLE = "unreadable"  # an image of a folder that cannot be decoded


@dataclass(frozen=True)
class Frame:
    index: int  # frame number in the source
    timestamp: float  # seconds from the start of the source
    image: np.ndarray  # BGR uint8


def header_size(source: Path | bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, WebP or BMP header (a file, or encoded bytes) without
    decoding; None for other formats or a header that cannot be read.

    >>> header_size(b"BM" + bytes(16) + (640).to_bytes(4, "little") + (-480).to_bytes(4, "little", signed=True))
    (640, 480)
    """
    if isinstance(source, bytes):
        return _header_size(io.BytesIO(source))
    with source.open("rb") as fh:
        return _header_size(fh)


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size.
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))


def _header_size(fh: BinaryIO) -> tuple[int, int] | None:
    head = fh.read(32)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_size(head)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head.startswith(b"BM") and len(head) >= 26:
        return _bmp_size(head)
    if not head.startswith(b"\xff\xd8"):
        return None
    fh.seek(2)
    return _jpeg_size(fh)


def _png_size(head: bytes) -> tuple[int, int] | None:
    if len(head) < 24 or head[12:16] != b"IHDR":  # IHDR must come first, and it fixes the size
        return None
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


def _bmp_size(head: bytes) -> tuple[int, int]:
    (header_bytes,) = struct.unpack("<I", head[14:18])
    if header_bytes == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        w, h = struct.unpack("<HH", head[18:22])
    else:
        w, h = struct.unpack("<ii", head[18:26])
    return abs(int(w)), abs(int(h))  # a negative height means top-down rows


def _jpeg_size(fh: BinaryIO) -> tuple[int, int] | None:
    """The size in the first start-of-frame segment, walking the markers from after SOI."""
    while True:
        marker = fh.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        kind = marker[1]
        if kind == 0xFF:  # fill byte before a marker
            fh.seek(-1, 1)
            continue
        if kind in (0xD8, 0x01) or 0xD0 <= kind <= 0xD7:
            continue
        length_bytes = fh.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if length < 2:
            return None
        if kind in _JPEG_SOF:
            data = fh.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return int(w), int(h)
        fh.seek(length - 2, 1)


def _webp_size(head: bytes) -> tuple[int, int] | None:
    """The canvas of a WebP file: lossy (VP8), lossless (VP8L) or extended (VP8X)."""
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        w = int.from_bytes(head[24:27], "little") + 1
        h = int.from_bytes(head[27:30], "little") + 1
        return w, h
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _too_large(name: str, size: tuple[int, int], max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"{name}: {size[0]}x{size[1]} image exceeds the {max_pixels:,}-pixel limit (EMOLENS_MAX_PIXELS)"
    )


def decode_image(data: bytes, max_pixels: int, name: str = "image", *, untrusted: bool = False) -> np.ndarray:
    """Decode encoded image bytes as stored (gray, BGR, BGRA; 8 or 16 bit). An image whose
    header declares more than ``max_pixels`` is refused before any pixel is decoded.

    ``untrusted`` (bytes from the network): only formats whose header states the size (JPEG,
    PNG, WebP, BMP) are decoded at all, so no decoder ever allocates for a size nobody checked:
    a few hundred bytes of PNG can declare 16000x16000 pixels (768 MB once decoded), and
    OpenCV's other decoders (TIFF, PNM, ...) would allocate whatever their header declares.

    >>> decode_image(b"not an image", 10**6)
    Traceback (most recent call last):
    ...
    emolens.errors.InputError: image: not a readable image (corrupt or unsupported format)
    """
    if not data:
        raise InputError(f"{name}: empty")
    size = header_size(data)
    if size is None and untrusted:
        raise InputError(f"{name}: not a readable image (send JPEG, PNG, WebP or BMP)")
    if size and size[0] * size[1] > max_pixels:
        raise _too_large(name, size, max_pixels)
    if size and untrusted and 0 in size:
        raise InputError(f"{name}: not a readable image (its header declares {size[0]}x{size[1]} pixels)")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # a decoder's refusal, e.g. above OPENCV_IO_MAX_IMAGE_PIXELS (emolens/__init__.py)
        why = (
            "its header declares more pixels than OPENCV_IO_MAX_IMAGE_PIXELS allows"
            if "CV_IO_MAX_IMAGE_PIXELS" in str(exc)
            else "corrupt or unsupported format"
        )
        raise InputError(f"{name}: not a readable image ({why})") from exc
    if image is None or image.size == 0:
        raise InputError(f"{name}: not a readable image (corrupt or unsupported format)")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise _too_large(name, (image.shape[1], image.shape[0]), max_pixels)
    return image


def read_image(path: Path, max_pixels: int) -> np.ndarray:
    """Decode an image file as it is stored (gray, BGR, BGRA; 8 or 16 bit)."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image")
    if not path.is_file():  # a FIFO or device would block the read, or never end
        raise InputError(f"{path}: not a regular file")
    try:
        size = header_size(path)
        if size and size[0] * size[1] > max_pixels:
            raise _too_large(str(path), size, max_pixels)  # before reading the whole file
        data = path.read_bytes()
    except OSError as exc:  # no permission, an I/O error
        raise InputError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from exc
    if not data:
        raise InputError(f"{path}: empty file")
    return decode_image(data, max_pixels, str(path))


def is_stream(source: str) -> bool:
    return source.startswith(STREAM_SCHEMES)


def is_live(source: str) -> bool:
    """A camera's live feed (reconnected when it drops, stamped by the wall clock), as opposed
    to a recording: RTSP/RTMP URLs, webcams, and HTTP URLs that do not name a video file
    (an ``http://.../clip.mp4`` is a recording served over HTTP)."""
    if source.isdigit() or source.startswith(("rtsp://", "rtsps://", "rtmp://")):
        return True
    if source.startswith(("http://", "https://")):
        return Path(urlparse(source).path).suffix.lower() not in VIDEO_EXTS
    return False


def source_kind(source: str) -> str:
    """``image``, ``video``, ``folder``, ``stream`` or ``webcam``; raises InputError."""
    if is_stream(source):
        return "stream"
    if source.isdigit():
        return "webcam"
    path = Path(source)
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise InputError(f"{source}: no such file or folder")
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in VIDEO_EXTS:
        return "video"
    raise InputError(
        f"{source}: unsupported file type {ext or '(none)'} "
        f"(images: {sorted(IMAGE_EXTS)}, videos: {sorted(VIDEO_EXTS)})"
    )


def folder_images(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def iter_video(source: str, fps: float | None = None, on_drop: Callable[[str], None] | None = None) -> Iterator[Frame]:
    """Frames of a video file, stream or webcam, sampled down to ``fps`` when given; each frame
    left out by the sampling is reported to ``on_drop("rate")``.

    A file that cannot be opened, or holds no decodable frame, raises InputError; a file
    that breaks off midway ends early with a warning (the frames before it are kept).
    """
    cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
    try:
        if not cap.isOpened():
            raise InputError(f"{source}: cannot open video (corrupt, unsupported codec or unreachable)")
        native = cap.get(cv2.CAP_PROP_FPS)
        native = native if native and 0 < native < 1000 else 30.0
        step = max(1.0, native / fps) if fps else 1.0
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        index, next_take, yielded = 0, 0.0, 0
        while True:
            ok, image = cap.read()
            if not ok:
                break
            if index + 1e-9 >= next_take:
                next_take += step
                yielded += 1
                yield Frame(index=index, timestamp=index / native, image=image)
            elif on_drop is not None:
                on_drop(DROP_RATE)
            index += 1
        if yielded == 0:
            raise InputError(f"{source}: no decodable frame (corrupt or truncated video)")
        if total and index < total - 1 and not is_stream(source):
            logs.event(log.warning, "video_truncated", source=source, decoded=index, declared=total)
    finally:
        cap.release()


def iter_stream(
    source: str,
    fps: float | None = None,
    *,
    backoff: Backoff | None = None,
    stop: threading.Event | None = None,
    on_reconnect: Callable[[int, str], None] | None = None,
    on_drop: Callable[[str], None] | None = None,
    open_timeout_s: float = 0.0,
) -> Iterator[Frame]:
    """Frames of a live source (``rtsp://``, ``http://`` MJPEG, a webcam index) that never
    ends on a dropped connection: it reopens the source with exponential backoff, calling
    ``on_reconnect(attempt, reason)`` before each try, until ``stop`` is set.

    A source that never opened gives up after ``open_timeout_s`` (0: never) with an
    InputError: a wrong URL or a missing webcam is a mistake to report, not an outage to wait
    out. Once it has opened, drops are waited out for as long as it takes.

    Frames are sampled to ``fps`` by their timestamps (:class:`~emolens.sampling.RateSampler`,
    tolerant of jitter); each one left out is reported to ``on_drop("rate")``. Frame indices
    keep counting across reconnects; timestamps are seconds since the first frame (by the wall
    clock: a live source has no position to replay).
    """
    backoff = backoff or Backoff()
    stop = stop or threading.Event()
    sampler = RateSampler(fps)
    index, t0 = 0, None
    attempt = 0
    first_try = time.monotonic()
    while not stop.is_set():
        cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
        try:
            if not cap.isOpened():
                reason = "open failed"
            else:
                reason = "stream ended"
                sampler.reopen()
                while not stop.is_set():
                    ok, image = cap.read()
                    if not ok:
                        break
                    backoff.reset()
                    attempt = 0
                    now = time.monotonic()
                    if t0 is None:
                        t0 = now
                    if not sampler.keep(now - t0):
                        if on_drop is not None:
                            on_drop(DROP_RATE)
                        continue
                    yield Frame(index=index, timestamp=now - t0, image=image)
                    index += 1
        finally:
            cap.release()
        if stop.is_set():
            return
        waited = time.monotonic() - first_try
        if t0 is None and open_timeout_s and waited >= open_timeout_s:
            raise InputError(
                f"{redact_url(source)}: the live source did not open within {open_timeout_s:g}s ({reason}); "
                "check the URL or webcam index (EMOLENS_SOURCE_OPEN_TIMEOUT_S=0 keeps trying)"
            )
        attempt += 1
        if on_reconnect is not None:
            on_reconnect(attempt, reason)
        else:
            logs.event(
                partial(log.log, logging.WARNING if t0 is not None else logging.INFO),
                "stream_reconnect",
                attempt=attempt,
                reason=reason,
            )
        delay = backoff.next_delay()
        if t0 is None and open_timeout_s:
            delay = min(delay, max(0.0, open_timeout_s - waited))  # give up on time, not a backoff later
        if stop.wait(delay):
            return


def video_frame_count(source: str) -> int:
    cap = cv2.VideoCapture(source)
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()


def video_fps(source: str) -> float:
    """The frame rate a video file declares (30 when it declares none, as :func:`iter_video` assumes)."""
    cap = cv2.VideoCapture(source)
    try:
        native = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    return float(native) if native and 0 < native < 1000 else 30.0


def iter_source(
    source: str,
    fps: float,
    max_pixels: int,
    *,
    stop: threading.Event | None = None,
    on_reconnect: Callable[[int, str], None] | None = None,
    on_drop: Callable[[str], None] | None = None,
    open_timeout_s: float = 0.0,
) -> Iterator[Frame]:
    """Frames of any source kind; a folder or image becomes a sequence at ``fps``; a live source
    (:func:`is_live`) is reopened with backoff when it drops (:func:`iter_stream`) until ``stop``.
    Every frame read but not yielded is reported to ``on_drop(reason)``: ``rate`` (sampled out),
    ``unreadable`` (an image of a folder that cannot be decoded)."""
    kind = source_kind(source)
    if is_live(source):
        yield from iter_stream(
            source, fps, stop=stop, on_reconnect=on_reconnect, on_drop=on_drop, open_timeout_s=open_timeout_s
        )
        return
    if kind in ("video", "stream"):
        yield from iter_video(source, fps, on_drop)
        return
    paths = [Path(source)] if kind == "image" else folder_images(Path(source))
    if not paths:
        raise InputError(f"{source}: folder holds no images")
    for i, path in enumerate(paths):
        try:
            image = read_image(path, max_pixels)
        except InputError as exc:
            logs.event(log.warning, "skip_input", reason=str(exc))
            if on_drop is not None:
                on_drop(DROP_UNREADABLE)
            continue
        yield Frame(index=i, timestamp=i / fps, image=image)
