"""Output people can use: annotated videos a browser plays, labels inside the frame, a progress
bar on a terminal only, ``-v`` events from emolens alone (no runtime chatter), ``--version``."""

import logging
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np
import pytest

from emolens.annotate import VideoWriter, annotate
from emolens.cli import build_parser, main
from emolens.errors import InputError
from emolens.results import FaceResult
from tests.conftest import MODEL_REPO

INF = ["--inference", f"onnx://{MODEL_REPO}"]
NATIVE_NOTICE = "Created TensorFlow Lite XNNPACK delegate"


@pytest.fixture
def ffmpeg() -> str:
    """The ffmpeg that the ``video`` extra ships, which writes the H.264 and probes it here."""
    return str(pytest.importorskip("imageio_ffmpeg", reason="the video extra is not installed").get_ffmpeg_exe())


def probe(ffmpeg: str, path: Path) -> tuple[str, int]:
    """(ffmpeg's description of the video stream, frames counted by reading every packet)."""
    run = subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-c",
            "copy",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    stream = next(line for line in run.stderr.splitlines() if "Video:" in line)
    frames = re.findall(r"frame=\s*(\d+)", run.stderr)
    return stream, int(frames[-1])


def top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types in file order (ftyp, moov, mdat, ...)."""
    data, names, at = path.read_bytes(), [], 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[at + 8 : at + 16], "big")
        names.append(kind)
        if size < 8:
            break
        at += size
    return names


# ---------------------------------------------------------------- annotated video


def test_annotated_video_plays_in_a_browser(ffmpeg, demo_clip, tmp_path, capsys):
    assert main(["analyze", str(demo_clip), "--annotate", str(tmp_path), "--no-progress", *INF]) == 0
    video = tmp_path / "demo.annotated.mp4"
    stream, frames = probe(ffmpeg, video)
    assert "Video: h264" in stream and "yuv420p" in stream, stream
    assert "640x480" in stream and " 10 fps" in stream, stream  # the source's size and rate
    assert frames == 40  # every frame of the 4 s, 10 fps clip
    boxes = top_level_boxes(video)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # faststart: plays before it has all loaded


def test_sampled_video_plays_at_the_sampling_rate(ffmpeg, demo_clip, tmp_path, capsys):
    assert main(["analyze", str(demo_clip), "--annotate", str(tmp_path), "--fps", "5", "--no-progress", *INF]) == 0
    stream, frames = probe(ffmpeg, tmp_path / "demo.annotated.mp4")
    assert frames == 20 and " 5 fps" in stream, stream  # 4 s still last 4 s


def test_odd_sized_frames_are_padded_to_even_sides(ffmpeg, tmp_path):
    frames = [np.full((121, 161, 3), 40 * i, np.uint8) for i in range(5)]
    with VideoWriter(tmp_path / "odd.mp4", 8, (161, 121)) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.codec == "h264"
    stream, n = probe(ffmpeg, tmp_path / "odd.mp4")
    assert "162x122" in stream and "yuv420p" in stream and n == 5, stream


def test_without_imageio_ffmpeg_it_writes_mp4v_and_warns_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if the package were not installed
    with caplog.at_level(logging.WARNING, logger="emolens"), VideoWriter(tmp_path / "v.mp4", 10, (64, 48)) as writer:
        for _ in range(6):
            writer.write(np.zeros((48, 64, 3), np.uint8))
    assert writer.codec == "mp4v"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "pip install 'emolens[video]'" in warnings[0], warnings
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    cap.release()


def test_a_video_ffmpeg_cannot_write_is_an_input_error(ffmpeg, tmp_path):
    target = tmp_path / "missing" / "v.mp4"  # ffmpeg cannot create a file in a folder that does not exist
    with pytest.raises(InputError, match=re.escape(str(target))), VideoWriter(target, 10, (64, 48)) as writer:
        for _ in range(200):
            writer.write(np.zeros((48, 64, 3), np.uint8))


# ---------------------------------------------------------------- labels


def _face(box: tuple[float, float, float, float]) -> FaceResult:
    return FaceResult(box, [], 0.9, 0.9, False, 0.8, {"happy": 0.9, "neutral": 0.1}, track_id=7)


def _text_pixels(image: np.ndarray) -> np.ndarray:
    """The label's glyphs: on a white frame the box and the tag are coloured, only the text is dark."""
    return (image.max(axis=2) < 60).astype(np.uint8)


def _span(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


@pytest.mark.parametrize(
    "box",
    [(0, 0, 40, 40), (160, 40, 200, 80), (170, 0, 200, 30), (0, 0, 200, 120), (-10, -10, 30, 30)],
    ids=["top-left", "right-edge", "top-right", "whole-frame", "partly-outside"],
)
def test_labels_stay_whole_inside_the_frame(box):
    x0, y0, x1, y1 = box
    # the same face and label far from any edge: the text as it should look
    reference = _text_pixels(
        annotate(np.full((600, 800, 3), 255, np.uint8), [_face((300, 300, 300 + x1 - x0, 300 + y1 - y0))])
    )
    frame = np.full((120, 200, 3), 255, np.uint8)
    text = _text_pixels(annotate(frame, [_face(box)]))
    rx0, ry0, rx1, ry1 = _span(reference)
    tx0, ty0, tx1, ty1 = _span(text)
    # every glyph pixel drawn, none cut off by an edge, and a margin of the tag around the text
    assert text.sum() == reference.sum()
    assert (tx1 - tx0, ty1 - ty0) == (rx1 - rx0, ry1 - ry0)
    assert 1 <= tx0 <= tx1 <= 200 - 2 and 1 <= ty0 <= ty1 <= 120 - 2
    assert np.array_equal(text[ty0 : ty1 + 1, tx0 : tx1 + 1], reference[ry0 : ry1 + 1, rx0 : rx1 + 1])


def test_a_frame_narrower_than_the_label_gets_smaller_text_not_a_cut_one():
    frame = np.full((80, 150, 3), 255, np.uint8)
    text = _text_pixels(annotate(frame, [_face((100, 0, 150, 40))]))
    x0, y0, x1, y1 = _span(text)
    assert 1 <= x0 <= x1 <= 150 - 2 and 1 <= y0 <= y1 <= 80 - 2


def test_on_a_128_px_image_the_whole_label_is_drawn_on_more_lines():
    """The issue's case: on a 128 px image the label read ``smile 23`` with the ``%`` and
    ``(low q)`` gone. Every glyph of the label drawn on a wide frame must be drawn on the small
    one too (the same count of text pixels), inside the frame."""
    face = FaceResult((30, 40, 90, 100), [], 0.9, 0.2, True, 0.23, {"happy": 0.9, "neutral": 0.1}, track_id=12)
    small = _text_pixels(annotate(np.full((128, 128, 3), 255, np.uint8), [face]))
    # the same glyphs at the smallest scale: draw the reference at that scale too
    from emolens import annotate as annotate_module

    ref = np.full((600, 800, 3), 128, np.uint8)  # a low-quality face's tag is grey
    for i, line in enumerate(annotate_module._lines("#12 happy 90% smile 23% (low q)", 0.3, 128)):
        cv2.putText(ref, line, (10, 30 + 20 * i), annotate_module._FONT, 0.3, (0, 0, 0), 1, cv2.LINE_AA)
    assert len(annotate_module._lines("#12 happy 90% smile 23% (low q)", 0.3, 128)) >= 2
    assert small.sum() == _text_pixels(ref).sum()
    x0, y0, x1, y1 = _span(small)
    assert 1 <= x0 <= x1 <= 128 - 2 and 1 <= y0 <= y1 <= 128 - 2


# ---------------------------------------------------------------- progress, verbosity, version


def _emolens(args: list[str], *, tty: bool) -> str:
    """stderr of ``emolens ARGS`` run as a user would, on a terminal (a pseudo-terminal) or a pipe."""
    command = [sys.executable, "-m", "emolens.cli", *args]
    env = dict(os.environ)
    env.pop("EMOLENS_LOG_LEVEL", None)
    if not tty:
        run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, run.stderr
        return run.stderr
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    # a new pseudo-terminal is 0 columns wide, where tqdm draws an empty bar: size it like a window
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=300) == 0
    return b"".join(chunks).decode(errors="replace")


BAR = re.compile(r"demo\.mp4: +\d+%\|.*\| *\d+/40 ")


def test_progress_bar_on_a_terminal_only_and_never_the_runtime_notice(demo_clip):
    on_terminal = _emolens(["analyze", str(demo_clip), *INF], tty=True)
    assert BAR.search(on_terminal), on_terminal
    assert NATIVE_NOTICE not in on_terminal
    forced_off = _emolens(["analyze", str(demo_clip), "--no-progress", *INF], tty=True)
    assert not BAR.search(forced_off) and "/40" not in forced_off, forced_off
    (summary,) = [line for line in forced_off.splitlines() if line.strip()]
    assert summary.startswith("analyzed 1 input(s), ") and summary.endswith("; 0 failed"), forced_off


def test_verbose_after_the_verb_logs_emolens_events_only(demo_clip):
    err = _emolens(["analyze", "-v", str(demo_clip), *INF], tty=False)
    assert NATIVE_NOTICE not in err and "/40" not in err, err  # a pipe: no bar
    logged = [line for line in err.splitlines() if line.startswith("ts=")]
    assert logged and all(" level=INFO logger=emolens " in line for line in logged), err
    frames = [line for line in logged if " event=frame " in line]
    assert len(frames) == 40 and " frame=39 " in frames[-1]
    (done,) = [line for line in logged if " event=video " in line]
    assert re.search(r" detect_ms=\d+\.\d .* classify_ms=\d+\.\d ", done), done  # each stage per frame
    others = [line for line in err.splitlines() if not line.startswith("ts=")]
    assert others == ["analyzed 1 input(s), " + re.search(r"faces=(\d+)", done)[1] + " face(s); 0 failed"], others


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [
        (["analyze", "x.jpg"], False),
        (["-v", "analyze", "x.jpg"], True),
        (["analyze", "-v", "x.jpg"], True),
        (["analyze", "x.jpg", "--verbose"], True),
        (["stats", "-v"], True),
    ],
)
def test_verbose_before_or_after_the_verb(argv, verbose):
    assert build_parser().parse_args(argv).verbose is verbose


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"emolens {version('emolens')}\n"
