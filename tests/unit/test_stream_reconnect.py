"""A live source that drops is reopened with backoff and never ends the ingest: a local MJPEG
server (multipart/x-mixed-replace over HTTP, as IP cameras serve) cuts its connection
mid-stream and goes away for a while; the frames keep coming after it returns."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from emolens.media import iter_stream
from emolens.retry import Backoff

pytestmark = pytest.mark.stream


class MjpegServer:
    """Serves ``frames_per_connection`` JPEG frames per connection, then cuts it."""

    def __init__(self, frames_per_connection: int = 15) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.frames_per_connection = frames_per_connection
        self.connections = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(outer.frames_per_connection):
                    image = np.full((120, 160, 3), (i * 16) % 256, np.uint8)
                    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                        self.wfile.write(f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.02)
                self.close_connection = True  # the cut: no closing boundary, the socket just closes

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def test_dropped_mjpeg_stream_is_reconnected_with_backoff():
    server = MjpegServer()
    server.start()
    stop = threading.Event()
    reconnects: list[tuple[int, str]] = []

    def on_reconnect(attempt: int, reason: str) -> None:
        reconnects.append((attempt, reason))
        if len(reconnects) == 1:
            # the camera goes away for a while after the first cut, then comes back
            server.stop()
            threading.Timer(1.0, server.start).start()

    frames = []
    deadline = time.monotonic() + 60
    backoff = Backoff(initial_s=0.1, maximum_s=0.4, jitter=0.0)
    for frame in iter_stream(f"http://127.0.0.1:{server.port}/", backoff=backoff, stop=stop, on_reconnect=on_reconnect):
        frames.append(frame)
        if (server.connections >= 2 and len(frames) >= server.frames_per_connection + 5) or time.monotonic() > deadline:
            stop.set()
    server.stop()
    assert server.connections >= 2, "the source was not reopened"
    assert len(reconnects) >= 2  # the cut, then at least one refused try while the server was down
    assert reconnects[0] == (1, "stream ended")
    assert reconnects[1] == (2, "open failed")  # backing off while the server is down
    assert len(frames) >= server.frames_per_connection + 5  # frames from after the outage
    assert [f.index for f in frames] == list(range(len(frames)))  # indices keep counting
    assert all(b.timestamp >= a.timestamp for a, b in itertools.pairwise(frames))


def test_stop_ends_a_stream_that_never_comes_up():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    stop = threading.Event()
    attempts: list[int] = []

    def on_reconnect(attempt: int, reason: str) -> None:
        attempts.append(attempt)
        if attempt == 3:
            stop.set()

    frames = list(
        iter_stream(
            f"http://127.0.0.1:{port}/", backoff=Backoff(0.05, jitter=0.0), stop=stop, on_reconnect=on_reconnect
        )
    )
    assert frames == [] and attempts == [1, 2, 3]
