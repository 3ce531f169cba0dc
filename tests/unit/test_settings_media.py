import struct
import zlib

import cv2
import numpy as np
import pytest

from emolens.errors import ConfigError, ImageTooLargeError, InputError
from emolens.media import header_size, read_image, source_kind
from emolens.settings import DETECTORS, MIN_K_ANONYMITY, PREPROCESS_MODES, Settings


def test_settings_from_env_and_overrides():
    s = Settings.from_env({"EMOLENS_FPS": "12.5", "EMOLENS_DB": "sqlite:///x.db", "EMOLENS_K_ANONYMITY": "3"})
    assert (s.fps, s.db, s.k_anonymity) == (12.5, "sqlite:///x.db", 3)
    assert Settings.from_env({"EMOLENS_FPS": "12.5"}, fps=2.0).fps == 2.0
    assert s.inference.startswith("onnx://")
    with pytest.raises(ConfigError):
        Settings.from_env({"EMOLENS_FPS": "fast"})
    with pytest.raises(ConfigError):
        Settings(fps=0)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("detector", "yolo", ", ".join(DETECTORS)),
        ("preprocess", "sharpen", ", ".join(PREPROCESS_MODES)),
        ("inference", "http://triton:8000", "onnx://[PATH] or triton://HOST:PORT"),
        ("inference", "triton://triton", "triton://HOST:PORT"),
        ("inference", "triton://triton:port", "triton://HOST:PORT"),
        ("bus", "kafka://", "kafka://HOST:PORT"),
        ("bus", "amqp://rabbit:5672", "memory:// or kafka://HOST:PORT"),
        ("bus", "kafka://a:9092,b", "kafka://HOST:PORT"),
        ("live", "memcached://cache:11211", "memory:// or redis://HOST:PORT/DB"),
        ("db", "mysql://db/emolens", "sqlite:///FILE or postgresql"),
        ("k_anonymity", -5, f"at least {MIN_K_ANONYMITY}"),
        ("k_anonymity", 0, f"at least {MIN_K_ANONYMITY}"),
        ("threads", -1, "0 (one per core) or more"),
        ("max_pixels", 0, "must be positive"),
        ("fps", -2.0, "must be positive"),
        ("smoothing", 1.0, "[0, 1)"),
        ("replay_window_s", 0, "must be positive"),
        ("replay_window_s", -60, "must be positive"),
    ],
)
def test_settings_refuse_values_outside_their_choices(field, value, allowed):
    with pytest.raises(ConfigError) as err:
        Settings(**{field: value})
    message = str(err.value)
    assert f"EMOLENS_{field.upper()}" in message and repr(value) in message and allowed in message


def test_settings_accept_what_the_chart_and_the_dev_servers_use():
    s = Settings(
        inference="triton://emolens-triton:8001",
        bus="kafka://kafka-0:9092,kafka-1:9092",
        live="redis://redis:6379/0",
        db="postgresql+psycopg://emolens@db:5432/emolens",
        detector="blazeface-short",
        preprocess="auto",
        k_anonymity=MIN_K_ANONYMITY,
    )
    assert s.with_(db="sqlite://", inference="onnx://").db == "sqlite://"


def test_a_negative_k_does_not_turn_suppression_off(tmp_path, capsys):
    from emolens.cli import main

    db = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["stats", "--db", db, "--camera-id", "c1", "--k", "-5"]) == 2
    assert "k_anonymity" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        Settings.from_env({"EMOLENS_K_ANONYMITY": "-5"})


def test_header_size_png_and_jpeg(tmp_path):
    img = np.zeros((37, 91, 3), np.uint8)
    for ext in (".png", ".jpg"):
        cv2.imwrite(str(tmp_path / f"a{ext}"), img)
        assert header_size(tmp_path / f"a{ext}") == (91, 37)
    (tmp_path / "x.bmp").write_bytes(b"BM....")
    assert header_size(tmp_path / "x.bmp") is None


def _png_header_only(path, w, h):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)))


def test_read_image_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.png", 10**7)
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        read_image(tmp_path / "notes.jpg", 10**7)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        read_image(tmp_path / "empty.png", 10**7)
    _png_header_only(tmp_path / "huge.png", 20000, 20000)
    with pytest.raises(ImageTooLargeError, match="20000x20000"):
        read_image(tmp_path / "huge.png", 40_000_000)


def test_source_kind(tmp_path):
    assert source_kind("rtsp://cam/1") == "stream"
    assert source_kind("0") == "webcam"
    assert source_kind(str(tmp_path)) == "folder"
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="unsupported file type"):
        source_kind(str(tmp_path / "a.txt"))
    with pytest.raises(InputError, match="no such file"):
        source_kind(str(tmp_path / "nope.mp4"))


def test_readme_documents_every_setting():
    import re

    from tests.conftest import ROOT

    documented = set(re.findall(r"^\| `(EMOLENS_[A-Z_]+)` \|", (ROOT / "README.md").read_text(), re.M))
    assert documented == set(Settings.env_names())
