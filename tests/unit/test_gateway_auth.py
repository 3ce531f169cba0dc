"""The gateway's security on loopback: TLS (and client certificates), bearer tokens and scopes,
no token in any log, images sized before decoding, stream caps and rate limits that keep unary
calls and health answering, and health that follows the store."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import logging
import os
import re
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from emolens.errors import ConfigError, Unavailable
from emolens.inference.onnx import OnnxClassifier
from emolens.live import MemoryLiveState
from emolens.media import header_size
from emolens.observations import FrameObservations
from emolens.results import EMOTIONS, FaceResult
from emolens.services import access as access_module
from emolens.services.access import Limits, TokenBucket, Tokens
from emolens.services.gateway import SERVICE_NAME, AnalyticsService, build_server
from emolens.settings import Settings
from emolens.store import Camera, SqlStore
from emolens.v1 import analytics_pb2, analytics_pb2_grpc
from emolens_tools.dev import free_port
from tests.conftest import MODEL_REPO, ROOT

pytestmark = pytest.mark.auth

T0 = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
TOKENS = {
    "ops": "ops-token-0123456789abcdef",
    "mall-a": "mall-a-token-0123456789abcdef",
    "cam-b1": "cam-b1-token-0123456789abcdef",
}
CAMERAS = [
    Camera("cam-a1", "entrance", "mall-a"),
    Camera("cam-a2", "food-court", "mall-a"),
    Camera("cam-b1", "entrance", "mall-b"),
    Camera("cam-b2", "checkout", "mall-b"),
]
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


# ---------------------------------------------------------------- certificates, made here


def _certificate(
    name: str, *, issuer: tuple[bytes, bytes] | None = None, ca: bool = False, server: bool = False
) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) for ``name``: self-signed, or signed by ``issuer`` (key, cert)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key, issuer_name = key, subject
    if issuer is not None:
        signer_key = serialization.load_pem_private_key(issuer[0], None)  # type: ignore[assignment]
        issuer_name = x509.load_pem_x509_certificate(issuer[1]).subject
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(signer_key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path | bytes]:
    """A self-signed server certificate, and a client CA with one client certificate it signed."""
    folder = tmp_path_factory.mktemp("pki")
    server_key, server_cert = _certificate("localhost", server=True)
    client_ca = _certificate("partners CA", ca=True)
    client_key, client_cert = _certificate("partner-a", issuer=client_ca)
    files = {"server.key": server_key, "server.crt": server_cert, "client-ca.crt": client_ca[1]}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {
        "cert": folder / "server.crt",
        "key": folder / "server.key",
        "client_ca": folder / "client-ca.crt",
        "server_cert_pem": server_cert,
        "client_key_pem": client_key,
        "client_cert_pem": client_cert,
    }


# ---------------------------------------------------------------- a gateway with sites and tokens


def _face(track: int) -> FaceResult:
    probs = dict.fromkeys(EMOTIONS, 0.0)
    probs["happy"] = 1.0
    return FaceResult((0, 0, 9, 9), [(0, 0)] * 6, 0.9, 0.9, False, 0.9, probs, track_id=track)


@pytest.fixture(scope="module")
def onnx() -> OnnxClassifier:
    return OnnxClassifier(MODEL_REPO)


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens.yaml"
    document = {
        "clients": [
            {"name": "ops", "token": TOKENS["ops"], "all": True},
            {"name": "mall-a", "sha256": hashlib.sha256(TOKENS["mall-a"].encode()).hexdigest(), "sites": ["mall-a"]},
            {"name": "cam-b1", "token": TOKENS["cam-b1"], "cameras": ["cam-b1"]},
        ]
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def store(tmp_path) -> Iterator[SqlStore]:
    s = SqlStore(f"sqlite:///{tmp_path / 'g.db'}")
    for camera in CAMERAS:
        s.ensure_camera(camera)
    s.apply(
        [
            FrameObservations(c.camera_id, i, T0 + dt.timedelta(seconds=10 * i), [_face(t) for t in range(6)])
            for c in CAMERAS
            for i in range(3)
        ]
    )
    yield s
    s.close()


def settings(**changes) -> Settings:
    return Settings.from_env({}, inference=f"onnx://{MODEL_REPO}", detector="blazeface", k_anonymity=1, **changes)


@contextmanager
def gateway(service: AnalyticsService, **options) -> Iterator[int]:
    server, port = build_server(service, "127.0.0.1:0", **options)
    server.start()
    try:
        yield port
    finally:
        server.stop(0)


@contextmanager
def plaintext(port: int) -> Iterator[analytics_pb2_grpc.AnalyticsStub]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield analytics_pb2_grpc.AnalyticsStub(channel)


def bearer(name: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {TOKENS[name]}")]


def refused(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        result = call(*args, **kwargs)
        if not hasattr(result, "faces") and not hasattr(result, "buckets"):
            next(iter(result))  # a stream: its first answer carries the refusal
    return err.value


@pytest.fixture
def authed(store, onnx, tokens_file) -> Iterator[tuple[analytics_pb2_grpc.AnalyticsStub, MemoryLiveState]]:
    """A plaintext loopback gateway with tokens (authentication is on whenever tokens are given)."""
    live = MemoryLiveState()
    live.add([FrameObservations(c.camera_id, 0, T0, [_face(1)]) for c in CAMERAS])
    service = AnalyticsService(settings(tokens_file=str(tokens_file), rate_limit=0), store, live, onnx)
    with gateway(service) as port, plaintext(port) as stub:
        yield stub, live


def _cameras_of(response: analytics_pb2.QueryStatsResponse) -> set[str]:
    return {b.camera_id for b in response.buckets}


# ---------------------------------------------------------------- TLS


def test_tls_handshake_works_and_plaintext_to_the_tls_port_fails(store, onnx, pki, tokens_file):
    service = AnalyticsService(
        settings(tls_cert=str(pki["cert"]), tls_key=str(pki["key"]), tokens_file=str(tokens_file)), store, None, onnx
    )
    with gateway(service) as port:
        credentials = grpc.ssl_channel_credentials(root_certificates=pki["server_cert_pem"])
        with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
            stub = analytics_pb2_grpc.AnalyticsStub(channel)
            resp = stub.QueryStats(
                analytics_pb2.QueryStatsRequest(camera_id="cam-a1"), metadata=bearer("ops"), timeout=10
            )
            assert len(resp.buckets) == 1
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5).status == SERVING
        with plaintext(port) as stub:
            err = refused(stub.QueryStats, analytics_pb2.QueryStatsRequest(), metadata=bearer("ops"), timeout=5)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        # a client that does not trust the certificate does not get through either
        untrusting = grpc.ssl_channel_credentials(root_certificates=_certificate("someone else")[1])
        with grpc.secure_channel(f"localhost:{port}", untrusting) as channel:
            err = refused(
                analytics_pb2_grpc.AnalyticsStub(channel).QueryStats,
                analytics_pb2.QueryStatsRequest(),
                metadata=bearer("ops"),
                timeout=5,
            )
        assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_client_certificates_are_required_with_a_client_ca(store, onnx, pki, tokens_file):
    service = AnalyticsService(
        settings(
            tls_cert=str(pki["cert"]),
            tls_key=str(pki["key"]),
            tls_client_ca=str(pki["client_ca"]),
            tokens_file=str(tokens_file),
        ),
        store,
        None,
        onnx,
    )
    request = analytics_pb2.QueryStatsRequest(camera_id="cam-a1")
    with gateway(service) as port:
        anonymous = grpc.ssl_channel_credentials(root_certificates=pki["server_cert_pem"])
        with grpc.secure_channel(f"localhost:{port}", anonymous) as channel:
            err = refused(
                analytics_pb2_grpc.AnalyticsStub(channel).QueryStats, request, metadata=bearer("ops"), timeout=5
            )
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        mutual = grpc.ssl_channel_credentials(
            root_certificates=pki["server_cert_pem"],
            private_key=pki["client_key_pem"],
            certificate_chain=pki["client_cert_pem"],
        )
        with grpc.secure_channel(f"localhost:{port}", mutual) as channel:
            resp = analytics_pb2_grpc.AnalyticsStub(channel).QueryStats(request, metadata=bearer("ops"), timeout=10)
        assert len(resp.buckets) == 1


def test_serving_rules_plaintext_and_no_auth_only_on_loopback(store, onnx, pki, tokens_file, tmp_path, capsys):
    bare = AnalyticsService(settings(), store, None, onnx)
    with pytest.raises(ConfigError, match=r"refusing to serve plaintext on 0\.0\.0\.0:0.*--insecure"):
        build_server(bare, "0.0.0.0:0")
    with pytest.raises(ConfigError, match=r"refusing to serve without authentication.*EMOLENS_TOKENS_FILE"):
        build_server(bare, "0.0.0.0:0", insecure=True)  # --insecure is about TLS only
    secured = AnalyticsService(
        settings(tls_cert=str(pki["cert"]), tls_key=str(pki["key"]), tokens_file=str(tokens_file)), store, None, onnx
    )
    server, port = build_server(secured, "0.0.0.0:0")
    assert port > 0
    server.stop(0)
    # the command line says the same in one line
    from emolens.cli import main

    assert main(["gateway", "--host", "0.0.0.0", "--port", "0", "--db", f"sqlite:///{tmp_path / 'c.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to serve plaintext on 0.0.0.0:0") and "Traceback" not in err


def test_tls_files_that_cannot_be_read_are_a_clear_error(store, onnx, tmp_path):
    (tmp_path / "k.pem").write_text("not a key")
    service = AnalyticsService(
        settings(tls_cert=str(tmp_path / "missing.pem"), tls_key=str(tmp_path / "k.pem")), store, None, onnx
    )
    with pytest.raises(ConfigError, match=r"missing\.pem: cannot read it"):
        build_server(service, "127.0.0.1:0")


# ---------------------------------------------------------------- tokens


@pytest.mark.parametrize(
    "metadata",
    [
        [],
        [("authorization", "Bearer not-a-token-anybody-issued")],
        [("authorization", "Bearer x")],  # far shorter than any token: refused, no exception
        [("authorization", "Bearer " + "y" * 4000)],  # far longer
        [("authorization", f"Basic {TOKENS['ops']}")],  # the right secret in the wrong scheme
        [("authorization", "Bearer ")],
    ],
    ids=["none", "unknown", "short", "long", "basic", "empty"],
)
def test_no_token_or_a_bad_one_is_unauthenticated_on_every_method(authed, astronaut, metadata):
    stub, _ = authed
    image = cv2.imencode(".jpg", astronaut)[1].tobytes()
    calls = [
        (stub.AnalyzeImage, analytics_pb2.AnalyzeImageRequest(image=image)),
        (stub.AnalyzeStream, iter([analytics_pb2.StreamFrame(image=image)])),
        (stub.QueryStats, analytics_pb2.QueryStatsRequest(camera_id="cam-a1")),
        (stub.WatchLive, analytics_pb2.WatchLiveRequest(camera_id="cam-a1")),
    ]
    for call, request in calls:
        err = refused(call, request, metadata=metadata, timeout=10)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (call, err.details())
        assert TOKENS["ops"] not in (err.details() or "")


def test_tokens_are_compared_as_digests_in_constant_time(monkeypatch, tokens_file):
    tokens = Tokens.load(tokens_file)
    compared: list[tuple[bytes, bytes]] = []
    real = access_module.hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(access_module.hmac, "compare_digest", spy)
    for wrong in ("x", "y" * 10_000, TOKENS["ops"][:-1], "é\udcff"):
        compared.clear()
        assert tokens.find(wrong) is None
        assert len(compared) == len(tokens) == 3  # every entry, no early exit
        assert all(len(a) == len(b) == 32 for a, b in compared)  # SHA-256 digests, never the token
    compared.clear()
    found = tokens.find(TOKENS["mall-a"])  # stored as sha256 in the file
    assert found is not None and found.name == "mall-a" and len(compared) == 3
    assert all(TOKENS["mall-a"].encode() not in a + b for a, b in compared)


def test_a_token_never_reaches_the_log(authed, caplog, astronaut):
    stub, _ = authed
    caplog.set_level(logging.DEBUG)
    stub.QueryStats(analytics_pb2.QueryStatsRequest(site="mall-a"), metadata=bearer("mall-a"), timeout=10)
    refused(stub.QueryStats, analytics_pb2.QueryStatsRequest(site="mall-b"), metadata=bearer("mall-a"), timeout=10)
    refused(stub.AnalyzeImage, analytics_pb2.AnalyzeImageRequest(image=b"junk"), metadata=bearer("ops"), timeout=10)
    wrong = "wrong-token-0123456789abcdef"
    refused(stub.QueryStats, analytics_pb2.QueryStatsRequest(), metadata=[("authorization", f"Bearer {wrong}")])
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "event=rpc_refused" in text and "client=mall-a" in text  # the log does say what happened ...
    for secret in (*TOKENS.values(), wrong):  # ... and who, but never with what
        assert secret not in text
        assert hashlib.sha256(secret.encode()).hexdigest() not in text


def test_tokens_file_errors_name_the_entry_never_the_token(tmp_path):
    cases = [
        ({"clients": [{"name": "a", "token": "short-secret", "all": True}]}, "at least 16 characters"),
        ({"clients": [{"name": "a", "token": "long-enough-secret-1", "sites": ["s"], "all": True}]}, "either all"),
        ({"clients": [{"name": "a", "token": "long-enough-secret-1"}]}, "either all"),
        ({"clients": [{"name": "a", "sha256": "abc", "all": True}]}, "64 hex digits"),
        (
            {
                "clients": [
                    {"name": "a", "token": "long-enough-secret-1", "all": True},
                    {"name": "b", "token": "long-enough-secret-1", "all": True},
                ]
            },
            "same token",
        ),
        ({"clients": [{"name": "a", "token": "a secret with spaces", "all": True}]}, "without spaces"),
        ({"tokens": []}, "'clients'"),
    ]
    for document, message in cases:
        path = tmp_path / "tokens.json"
        path.write_text(json.dumps(document))  # JSON is read as well as YAML
        with pytest.raises(ConfigError) as err:
            Tokens.load(path)
        assert message in str(err.value) and "secret" not in str(err.value), str(err.value)
    with pytest.raises(ConfigError, match="cannot read"):
        Tokens.load(tmp_path / "absent.yaml")


def test_the_tokens_file_of_docs_api_is_one_the_gateway_reads():
    text = (ROOT / "docs" / "api.md").read_text()
    example = re.search(r"```yaml\n(clients:.*?)```", text, re.S)
    assert example is not None
    tokens = Tokens.parse(yaml.safe_load(example.group(1)), "docs/api.md")
    assert len(tokens) == 3


# ---------------------------------------------------------------- scopes


def test_out_of_scope_camera_site_or_zone_is_permission_denied(authed):
    stub, _ = authed
    for request in (
        analytics_pb2.QueryStatsRequest(camera_id="cam-b1"),
        analytics_pb2.QueryStatsRequest(site="mall-b"),
        analytics_pb2.QueryStatsRequest(zone="checkout"),  # a zone of mall-b only
        analytics_pb2.QueryStatsRequest(site="mall-b", zone="entrance"),
    ):
        err = refused(stub.QueryStats, request, metadata=bearer("mall-a"), timeout=10)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, request
    err = refused(stub.WatchLive, analytics_pb2.WatchLiveRequest(camera_id="cam-b1"), metadata=bearer("mall-a"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = refused(stub.QueryStats, analytics_pb2.QueryStatsRequest(camera_id="cam-a1"), metadata=bearer("cam-b1"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_an_unknown_camera_outside_the_scope_is_permission_denied_not_not_found(authed):
    """Otherwise a partner could tell which camera ids exist: both answers are the same."""
    stub, _ = authed
    answers = {}
    for camera in ("cam-b1", "no-such-camera"):
        err = refused(stub.QueryStats, analytics_pb2.QueryStatsRequest(camera_id=camera), metadata=bearer("mall-a"))
        answers[camera] = (err.code(), err.details().replace(camera, "<id>"))
        err = refused(stub.WatchLive, analytics_pb2.WatchLiveRequest(camera_id=camera), metadata=bearer("mall-a"))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert answers["cam-b1"] == answers["no-such-camera"]
    assert answers["cam-b1"][0] == grpc.StatusCode.PERMISSION_DENIED
    # a token that sees everything learns nothing new from NOT_FOUND
    err = refused(stub.QueryStats, analytics_pb2.QueryStatsRequest(camera_id="no-such-camera"), metadata=bearer("ops"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_in_scope_calls_work_and_unfiltered_ones_return_only_what_the_token_sees(authed):
    stub, _ = authed

    def query(token: str, **filters) -> set[str]:
        return _cameras_of(stub.QueryStats(analytics_pb2.QueryStatsRequest(**filters), metadata=bearer(token)))

    assert query("ops") == {"cam-a1", "cam-a2", "cam-b1", "cam-b2"}
    assert query("mall-a") == {"cam-a1", "cam-a2"}
    assert query("mall-a", site="mall-a") == {"cam-a1", "cam-a2"}
    assert query("mall-a", zone="entrance") == {"cam-a1"}  # not mall-b's entrance
    assert query("mall-a", camera_id="cam-a2") == {"cam-a2"}
    assert query("cam-b1") == {"cam-b1"}
    assert query("cam-b1", site="mall-b") == {"cam-b1"}  # its site, narrowed to what it sees
    first = next(stub.WatchLive(analytics_pb2.WatchLiveRequest(camera_id="cam-a1"), metadata=bearer("mall-a")))
    assert (first.camera_id, first.faces) == ("cam-a1", 1)


def test_watch_live_without_a_camera_streams_every_camera_in_scope_only(authed):
    stub, _ = authed
    seen: set[str] = set()
    with pytest.raises(grpc.RpcError) as err:
        for counters in stub.WatchLive(analytics_pb2.WatchLiveRequest(), metadata=bearer("mall-a"), timeout=1.5):
            seen.add(counters.camera_id)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # the stream only ends when we stop it
    assert seen == {"cam-a1", "cam-a2"}


# ---------------------------------------------------------------- reflection


def test_reflection_is_off_by_default_and_needs_a_token_when_on(store, onnx, tokens_file):
    request = [reflection_pb2.ServerReflectionRequest(list_services="")]
    for on in (False, True):
        service = AnalyticsService(settings(tokens_file=str(tokens_file)), store, None, onnx)
        with gateway(service, reflection=on) as port, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            info = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo
            if not on:
                assert refused(info, iter(request), metadata=bearer("ops")).code() == grpc.StatusCode.UNIMPLEMENTED
                continue
            assert refused(info, iter(request)).code() == grpc.StatusCode.UNAUTHENTICATED
            (resp,) = list(info(iter(request), metadata=bearer("ops"), timeout=5))
            assert SERVICE_NAME in {s.name for s in resp.list_services_response.service}


# ---------------------------------------------------------------- images: size before decoding


def _png_bomb(width: int, height: int) -> bytes:
    """A valid grayscale PNG of width x height black pixels, compressed row by row (the test
    never holds the pixels): a few hundred KB that decode to width * height bytes."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(data: bytes) -> bytes:
        return struct.pack(">I", len(data) - 4) + data + struct.pack(">I", zlib.crc32(data))

    return b"\x89PNG\r\n\x1a\n" + chunk(ihdr) + chunk(b"IDAT" + idat) + chunk(b"IEND")


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from /proc")
def test_a_decompression_bomb_is_refused_before_decoding_with_bounded_memory(tmp_path, astronaut):
    bomb = _png_bomb(16_000, 16_000)
    assert len(bomb) < 1_000_000 and header_size(bomb) == (16_000, 16_000)  # 768 MB once decoded as BGR
    jpeg_header = b"\xff\xd8\xff\xc0\x00\x11\x08" + struct.pack(">HH", 60_000, 60_000) + b"\x03" + bytes(9)
    port = free_port()
    env = {**os.environ, "EMOLENS_DB": f"sqlite:///{tmp_path / 'b.db'}", "EMOLENS_DETECTOR": "blazeface"}
    env.pop("EMOLENS_TOKENS_FILE", None)
    gateway_process = subprocess.Popen(
        [sys.executable, "-m", "emolens", "gateway", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=120)
            stub = analytics_pb2_grpc.AnalyticsStub(channel)
            photo = cv2.imencode(".png", astronaut)[1].tobytes()
            assert len(stub.AnalyzeImage(analytics_pb2.AnalyzeImageRequest(image=photo), timeout=60).faces) == 1
            before = _peak_rss_mb(gateway_process.pid)  # models loaded, one photo analysed
            for payload, size in ((bomb, "16000x16000"), (jpeg_header, "60000x60000")):
                for _ in range(3):
                    err = refused(stub.AnalyzeImage, analytics_pb2.AnalyzeImageRequest(image=payload), timeout=30)
                    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
                    assert size in err.details() and "EMOLENS_MAX_PIXELS" in err.details()
            frames = iter([analytics_pb2.StreamFrame(image=bomb, frame_seq=3)])
            err = refused(stub.AnalyzeStream, frames, timeout=30)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "frame 3" in err.details()
            growth = _peak_rss_mb(gateway_process.pid) - before
    finally:
        gateway_process.terminate()
        gateway_process.wait(timeout=30)
    assert growth < 200, f"peak RSS grew by {growth:.0f} MB"


def test_formats_whose_header_gives_no_size_are_refused_unread(store, onnx):
    noisy = np.random.default_rng(1).integers(0, 256, (40, 60, 3), np.uint8)
    with gateway(AnalyticsService(settings(), store, None, onnx)) as port, plaintext(port) as stub:
        for ext in (".webp", ".bmp"):  # sizes in their headers: analysed
            image = cv2.imencode(ext, noisy)[1].tobytes()
            assert len(stub.AnalyzeImage(analytics_pb2.AnalyzeImageRequest(image=image), timeout=30).faces) == 0
        for ext in (".tiff", ".ppm"):  # OpenCV would allocate whatever these declare
            image = cv2.imencode(ext, noisy)[1].tobytes()
            err = refused(stub.AnalyzeImage, analytics_pb2.AnalyzeImageRequest(image=image), timeout=30)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "send JPEG, PNG, WebP or BMP" in err.details()


# ---------------------------------------------------------------- streams, unary calls, health and rate


def test_streams_over_the_cap_are_refused_and_unary_calls_and_health_still_answer(store, onnx, tokens_file):
    live = MemoryLiveState()
    live.add([FrameObservations(c.camera_id, 0, T0, [_face(1)]) for c in CAMERAS])
    capped = settings(
        tokens_file=str(tokens_file), max_streams=3, max_streams_per_client=2, gateway_workers=2, rate_limit=0
    )
    service = AnalyticsService(capped, store, live, onnx)
    watch = analytics_pb2.WatchLiveRequest(camera_id="cam-a1")
    with gateway(service) as port, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = analytics_pb2_grpc.AnalyticsStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        streams = []
        for token in ("mall-a", "mall-a", "ops"):
            stream = stub.WatchLive(watch, metadata=bearer(token), timeout=60)
            assert next(stream).camera_id == "cam-a1"  # admitted and holding its worker thread
            streams.append(stream)
        per_client = refused(stub.WatchLive, watch, metadata=bearer("mall-a"), timeout=10)
        assert per_client.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "open streams" in per_client.details()
        total = refused(stub.WatchLive, watch, metadata=bearer("ops"), timeout=10)
        assert total.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert service.access.limits.open_streams() == 3
        for _ in range(5):  # more unary calls than unary workers, one after another, each prompt
            started = time.monotonic()
            stub.QueryStats(analytics_pb2.QueryStatsRequest(camera_id="cam-a1"), metadata=bearer("ops"), timeout=5)
            assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == SERVING
            assert time.monotonic() - started < 1.0
        for stream in streams:
            stream.cancel()
        deadline = time.monotonic() + 5
        while service.access.limits.open_streams() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.access.limits.open_streams() == 0  # cancelled streams give their slots back
        assert next(stub.WatchLive(watch, metadata=bearer("mall-a"), timeout=10)).camera_id == "cam-a1"


def test_rate_limit_per_client(store, onnx, tokens_file):
    limited = settings(tokens_file=str(tokens_file), rate_limit=0.5, rate_burst=3)
    request = analytics_pb2.QueryStatsRequest(camera_id="cam-a1")
    with gateway(AnalyticsService(limited, store, None, onnx)) as port, plaintext(port) as stub:
        for _ in range(3):
            stub.QueryStats(request, metadata=bearer("mall-a"), timeout=5)
        err = refused(stub.QueryStats, request, metadata=bearer("mall-a"), timeout=5)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in err.details()
        stub.QueryStats(request, metadata=bearer("ops"), timeout=5)  # another client has its own bucket


def test_local_callers_without_tokens_are_not_rate_limited(store, onnx):
    """Authentication off (loopback only): a local script is not paced, streams are still capped."""
    local = settings(rate_limit=0.5, rate_burst=1, max_streams_per_client=1)
    live = MemoryLiveState()
    live.add([FrameObservations("cam-a1", 0, T0, [_face(1)])])
    with gateway(AnalyticsService(local, store, live, onnx)) as port, plaintext(port) as stub:
        for _ in range(5):
            stub.QueryStats(analytics_pb2.QueryStatsRequest(camera_id="cam-a1"), timeout=5)
        watch = analytics_pb2.WatchLiveRequest(camera_id="cam-a1")
        stream = stub.WatchLive(watch, timeout=30)
        next(stream)
        assert refused(stub.WatchLive, watch, timeout=10).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        stream.cancel()


def test_token_bucket_refills_at_its_rate():
    clock = [0.0]
    bucket = TokenBucket(rate=2.0, burst=2, now=lambda: clock[0])
    assert [bucket.take(), bucket.take(), bucket.take()] == [True, True, False]
    clock[0] = 0.5  # one call's worth
    assert [bucket.take(), bucket.take()] == [True, False]
    clock[0] = 100.0  # never more than the burst
    assert [bucket.take() for _ in range(3)] == [True, True, False]


def test_stream_slots_are_released_once():
    limits = Limits(rate=0, burst=1, max_streams=2, max_streams_per_client=2)
    release = limits.open_stream("a")
    release()
    release()  # the callback and the generator's finally both call it
    assert limits.open_streams() == 0
    limits.open_stream("a")
    limits.open_stream("b")
    assert limits.open_streams() == 2


# ---------------------------------------------------------------- health follows the store


class SwitchableStore:
    """The real store, until ``down`` is set: then every call raises Unavailable, as a
    PostgreSQL that went away would after the store's own handling."""

    def __init__(self, inner: SqlStore) -> None:
        self.inner, self.down = inner, threading.Event()

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def call(*args, **kwargs):
            if self.down.is_set():
                raise Unavailable("the postgresql database is unavailable")
            return method(*args, **kwargs)

        return call


class SwitchableLive(MemoryLiveState):
    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()

    def cameras(self) -> list[str]:
        if self.down.is_set():
            raise Unavailable("redis is unavailable")
        return super().cameras()


def _wait_for(check, want, seconds: float = 5.0):
    deadline = time.monotonic() + seconds
    while (got := check()) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


@pytest.mark.parametrize("failing", ["store", "live"])
def test_health_is_not_serving_while_the_store_or_live_state_is_unreachable(store, onnx, tokens_file, failing):
    db, live = SwitchableStore(store), SwitchableLive()
    health_port = free_port()
    service = AnalyticsService(
        settings(tokens_file=str(tokens_file), health_interval=0.1, health_port=health_port), db, live, onnx
    )
    switch = db.down if failing == "store" else live.down
    with (
        gateway(service) as port,
        grpc.insecure_channel(f"127.0.0.1:{port}") as api,
        grpc.insecure_channel(f"127.0.0.1:{health_port}") as probe,
    ):

        def statuses():  # no token: Kubernetes' probes have none
            return [
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
                for channel in (api, probe)
                for name in ("", SERVICE_NAME)
            ]

        assert statuses() == [SERVING] * 4
        switch.set()
        assert _wait_for(statuses, [NOT_SERVING] * 4) == [NOT_SERVING] * 4
        switch.clear()
        assert _wait_for(statuses, [SERVING] * 4) == [SERVING] * 4
