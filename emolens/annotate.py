"""Annotated output images and videos: boxes, track ids, labels; faces optionally blurred.

Opt-in and local only: the services never write face pixels anywhere.

An annotated video is H.264 in MP4 (yuv420p, index first) so that a browser plays it, encoded by
the ffmpeg that ``imageio-ffmpeg`` ships (the ``video`` extra); without it, OpenCV writes MPEG-4
Part 2, which desktop players open but browsers mostly do not, and says so once.

>>> import numpy as np
>>> face = FaceResult((0, 0, 30, 30), [], 0.9, 0.9, False, 0.8, {"happy": 0.9, "neutral": 0.1})
>>> annotate(np.zeros((60, 80, 3), np.uint8), [face]).shape
(60, 80, 3)
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

import cv2
import numpy as np

from emolens import logs
from emolens.errors import InputError
from emolens.results import FaceResult

log = logging.getLogger(__name__)

_COLORS = {
    "angry": (40, 40, 220),
    "disgust": (40, 140, 40),
    "fear": (160, 60, 160),
    "happy": (40, 200, 240),
    "sad": (200, 120, 40),
    "surprise": (240, 200, 40),
    "neutral": (200, 200, 200),
}
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.45
_MIN_FONT_SCALE = 0.3  # below this Hershey text is unreadable; a narrower frame gets the label on several lines
_PAD = 3  # label background around the text, pixels


def annotate(image: np.ndarray, faces: list[FaceResult], blur: bool = False) -> np.ndarray:
    out = image.copy()
    for face in faces:
        x0, y0, x1, y1 = (round(v) for v in face.box)
        x0, y0 = max(x0, 0), max(y0, 0)
        if blur and x1 > x0 and y1 > y0:
            region = out[y0:y1, x0:x1]
            k = max(3, (min(region.shape[:2]) // 3) | 1)
            out[y0:y1, x0:x1] = cv2.GaussianBlur(region, (k, k), 0)
        color = (128, 128, 128) if face.low_quality else _COLORS[face.label]
        cv2.rectangle(out, (x0, y0), (x1, y1), color, 2)
        tag = f"#{face.track_id} " if face.track_id is not None else ""
        text = f"{tag}{face.label} {face.emotions[face.label]:.0%} smile {face.smile:.0%}"
        if face.low_quality:
            text += " (low q)"
        _label(out, text, (x0, y0, x1, y1), color)
    return out


def _lines(text: str, scale: float, width: int) -> list[str]:
    """``text`` broken at spaces into lines that each fit ``width`` pixels at ``scale`` (a word
    longer than that stays whole on its own line: nothing is cut)."""
    lines: list[str] = []
    for word in text.split(" "):
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(joined, _FONT, scale, 1)[0][0] + 2 * _PAD <= width:
            lines[-1] = joined
        else:
            lines.append(word)
    return lines


def _label(out: np.ndarray, text: str, box: tuple[int, int, int, int], color: tuple[int, int, int]) -> None:
    """``text`` on a filled tag beside the box, kept whole inside the frame: above the box, else
    below it, else inside its top; slid left off the right edge; smaller when the frame is narrow,
    and broken into lines when even the smallest size is wider than the frame."""
    h, w = out.shape[:2]
    x0, y0, _, y1 = box
    scale = _FONT_SCALE
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    while tw + 2 * _PAD > w and scale > _MIN_FONT_SCALE:
        scale = max(_MIN_FONT_SCALE, scale - 0.05)
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    lines = [text] if tw + 2 * _PAD <= w else _lines(text, scale, w)
    tw = max(cv2.getTextSize(line, _FONT, scale, 1)[0][0] for line in lines)
    line_h = th + base
    tag_w, tag_h = tw + 2 * _PAD, line_h * len(lines) + 2 * _PAD
    if y0 - 2 - tag_h >= 0:
        top = y0 - 2 - tag_h
    elif y1 + 2 + tag_h <= h:
        top = y1 + 2
    else:
        top = min(max(y0, 0), max(h - tag_h, 0))
    left = min(max(x0, 0), max(w - tag_w, 0))
    cv2.rectangle(out, (left, top), (left + tag_w - 1, top + tag_h - 1), color, -1)
    for i, line in enumerate(lines):
        cv2.putText(out, line, (left + _PAD, top + _PAD + th + i * line_h), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


class VideoWriter:
    """Annotated frames (BGR uint8, one size) -> ``path``, an MP4 a browser plays.

    ``codec`` says what it wrote: ``h264`` (yuv420p, ``+faststart``) through imageio-ffmpeg's
    ffmpeg, or ``mp4v`` through OpenCV when that package is missing. An odd width or height gets
    one black row or column, since yuv420p needs even sides. Use it as a context manager; a
    failure to write is an ``InputError`` naming the file.
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.path = path
        self.size = size  # width, height of the frames given
        self._even = (size[0] + size[0] % 2, size[1] + size[1] % 2)
        self._ffmpeg: subprocess.Popen[bytes] | None = None
        self._opencv: cv2.VideoWriter | None = None
        self._errors: IO[bytes] | None = None
        exe = _ffmpeg_exe()
        if exe is not None:
            self.codec = "h264"
            # ffmpeg's messages go to a file, not a pipe, so a chatty ffmpeg never blocks; closed in close()
            self._errors = errors = tempfile.TemporaryFile()  # noqa: SIM115
            width, height = self._even
            command = [
                *(exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"),
                *("-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-"),
                *("-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"),
                *("-movflags", "+faststart", str(path)),
            ]
            try:
                self._ffmpeg = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=errors)
            except OSError as exc:
                errors.close()
                raise InputError(f"{path}: could not start ffmpeg ({exc.strerror})") from exc
        else:
            self.codec = "mp4v"
            logs.event(
                log.warning,
                "video_fallback",
                path=path,
                codec="mp4v",
                reason="imageio-ffmpeg is not installed, so browsers may not play it: pip install 'emolens[video]'",
            )
            self._opencv = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
            if not self._opencv.isOpened():
                raise InputError(f"{path}: could not write the annotated video")

    def write(self, frame: np.ndarray) -> None:
        if self._opencv is not None:
            self._opencv.write(frame)
            return
        assert self._ffmpeg is not None and self._ffmpeg.stdin is not None
        if frame.shape[1::-1] != self._even:
            pad_w, pad_h = self._even[0] - frame.shape[1], self._even[1] - frame.shape[0]
            frame = cv2.copyMakeBorder(frame, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT)
        try:
            self._ffmpeg.stdin.write(np.ascontiguousarray(frame).tobytes())
        except OSError as exc:  # ffmpeg quit (disk full, unwritable path): its reason, not the pipe's
            self._ffmpeg.wait()
            raise InputError(f"{self.path}: could not write the annotated video ({self._reason()})") from exc

    def close(self) -> None:
        if self._opencv is not None:
            self._opencv.release()
            self._opencv = None
        if self._ffmpeg is None:
            return
        ffmpeg, self._ffmpeg = self._ffmpeg, None
        try:
            if ffmpeg.stdin is not None and not ffmpeg.stdin.closed:
                with contextlib.suppress(OSError):  # it has quit already; its exit code says why
                    ffmpeg.stdin.close()
            if ffmpeg.wait() != 0:
                raise InputError(f"{self.path}: could not write the annotated video ({self._reason()})")
        finally:
            if self._errors is not None:
                self._errors.close()

    def _reason(self) -> str:
        if self._errors is None:
            return "ffmpeg failed"
        self._errors.seek(0)
        lines = self._errors.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "ffmpeg failed"

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
            return
        # the frames so far still make a playable file; the error that stopped them is the one to report
        with contextlib.suppress(InputError):
            self.close()


def _ffmpeg_exe() -> str | None:
    """The ffmpeg binary imageio-ffmpeg ships (it has libx264), or None without the package."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        exe = str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError:  # a platform it has no binary for, and none on PATH
        return None
    return exe if shutil.which(exe) or Path(exe).exists() else None
