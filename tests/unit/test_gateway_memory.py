"""The gateway bounds the decoded pixels it holds (docs/reliability.md, "The gateway can be pushed
out of memory"): 24 concurrent AnalyzeImage calls of a 116 KB, 6,300x6,300 PNG (under the 40 MP
limit, 119 MB once decoded) keep a real gateway process under 1.5 GB and answering health; the
calls beyond the budget wait briefly or are refused with RESOURCE_EXHAUSTED."""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emolens.errors import ResourceExhausted
from emolens.services.access import Limits
from emolens.v1 import analytics_pb2, analytics_pb2_grpc
from emolens_tools.dev import free_port
from tests.conftest import ROOT

pytestmark = [pytest.mark.memory, pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")]

SIDE = 6_300
CALLS = 24
LIMIT_MB = 1_536


def flat_png(width: int, height: int, value: int = 128) -> bytes:
    """A valid RGB PNG of one grey level, compressed row by row (the pixels are never held)."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes([value]) * (3 * width)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(data: bytes) -> bytes:
        return struct.pack(">I", len(data) - 4) + data + struct.pack(">I", zlib.crc32(data))

    return b"\x89PNG\r\n\x1a\n" + chunk(ihdr) + chunk(b"IDAT" + idat) + chunk(b"IEND")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def load(port: int, image: bytes, tokens: list[str], calls: int = CALLS) -> tuple[Counter[str], list[str], list[float]]:
    """``calls`` concurrent AnalyzeImage calls of ``image`` (tokens taken in turn), health asked
    every 0.1 s meanwhile; returns the status codes, refusal details and health answer times."""
    codes: Counter[str] = Counter()
    details: list[str] = []
    health_s: list[float] = []
    done = threading.Event()
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = analytics_pb2_grpc.AnalyticsStub(channel)
        health = health_pb2_grpc.HealthStub(channel)

        def call(i: int) -> None:
            metadata = [("authorization", f"Bearer {tokens[i % len(tokens)]}")] if tokens else None
            try:
                stub.AnalyzeImage(analytics_pb2.AnalyzeImageRequest(image=image), metadata=metadata, timeout=120)
                codes["OK"] += 1
            except grpc.RpcError as exc:
                codes[exc.code().name] += 1
                details.append(exc.details() or "")

        def ask_health() -> None:
            while not done.is_set():
                t0 = time.monotonic()
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                    health_s.append(time.monotonic() - t0 if status == health_pb2.HealthCheckResponse.SERVING else 99)
                except grpc.RpcError:
                    health_s.append(99.0)
                done.wait(0.1)

        prober = threading.Thread(target=ask_health)
        prober.start()
        threads = [threading.Thread(target=call, args=(i,)) for i in range(calls)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        prober.join()
    return codes, details, health_s


def start_gateway(tmp_path: Path, tokens: dict[str, str], env_extra: dict[str, str] | None = None) -> tuple:
    port = free_port()
    env = {**os.environ, "EMOLENS_DB": f"sqlite:///{tmp_path / 'm.db'}", "EMOLENS_DETECTOR": "blazeface"}
    env.update({"EMOLENS_RATE_LIMIT": "0", "EMOLENS_HEALTH_INTERVAL": "1", **(env_extra or {})})
    if tokens:
        path = tmp_path / "tokens.yaml"
        clients = [
            {"name": name, "sha256": hashlib.sha256(t.encode()).hexdigest(), "all": True} for name, t in tokens.items()
        ]
        path.write_text(yaml.safe_dump({"clients": clients}))
        env["EMOLENS_TOKENS_FILE"] = str(path)
    process = subprocess.Popen(
        [sys.executable, "-m", "emolens", "gateway", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=120)
    return process, port


def test_concurrent_huge_images_keep_the_gateway_bounded_and_answering_health(tmp_path):
    png = flat_png(SIDE, SIDE)
    assert len(png) < 130_000  # the 116 KB, 39.7 MP file
    tokens = {f"partner-{i}": f"partner-{i}-token-0123456789abcdef" for i in range(3)}
    process, port = start_gateway(tmp_path, tokens)
    try:
        codes, details, health_s = load(port, png, list(tokens.values()))
        peak = rss_mb(process.pid, "VmHWM")
        # the budget is given back: one more image is analysed alone
        codes_after, _, _ = load(port, png, list(tokens.values()), calls=1)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert peak < LIMIT_MB, f"peak RSS {peak:.0f} MB"
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, (codes, details)
    assert codes["OK"] >= 2 and codes["RESOURCE_EXHAUSTED"] >= 1, codes
    assert all("EMOLENS_MAX_PIXELS_IN_FLIGHT" in d for d in details)
    assert codes_after == Counter({"OK": 1})
    assert health_s and max(health_s) < 2.0, health_s  # SERVING throughout, within 2 s
    assert b"Traceback" not in stderr


def test_the_pixel_budget_is_per_client_and_in_total_and_waits_briefly():
    limits = Limits(0, 1, 1, 1, max_pixels=100, max_pixels_per_client=60, max_pixel_waiters=1, pixel_wait_s=0.5)
    released: list[float] = []

    def later() -> None:
        with limits.pixels("c", 40):  # waits until b gives its 50 back
            released.append(time.monotonic())

    with limits.pixels("a", 50):
        with pytest.raises(ResourceExhausted, match="this client's"), limits.pixels("a", 20):  # 70 > 60
            pass
        with limits.pixels("b", 50):  # 100: the whole budget
            t0 = time.monotonic()
            with pytest.raises(ResourceExhausted, match="the gateway's"), limits.pixels("c", 1):
                pass
            assert 0.4 < time.monotonic() - t0 < 2.0  # it waited for room first
            waiter = threading.Thread(target=later)
            waiter.start()
            time.sleep(0.1)
            t0 = time.monotonic()
            with pytest.raises(ResourceExhausted), limits.pixels("d", 40):  # one waiter at most
                pass
            assert time.monotonic() - t0 < 0.2  # refused at once
            freed_at = time.monotonic()
        waiter.join()
        assert released and released[0] >= freed_at
    assert limits.pixels_in_flight() == 0
