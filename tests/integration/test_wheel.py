"""The package as a user installs it: a wheel built from this checkout, installed with its
``platform`` extra into a fresh virtualenv outside the checkout, runs ``emolens analyze`` on a
photo and serves ``AnalyzeImage`` from ``emolens gateway`` with no file of the checkout on the
path (the models, the detector's weights and the gRPC code all come from the wheel)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import grpc
import pytest

from emolens.v1 import analytics_pb2, analytics_pb2_grpc
from tests.conftest import ROOT, copy_checkout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    """The environment without anything pointing into the checkout or its virtualenv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMOLENS_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if str(ROOT) not in p)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(virtualenv, working folder) with the wheel installed as ``emolens[platform]``."""
    work = tmp_path_factory.mktemp("wheel")
    source = copy_checkout(work / "source")
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        check=True,
        timeout=600,
    )
    (wheel,) = dist.glob("emolens-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "emolens/model_repository/emotion/1/model.onnx",
        "emolens/model_repository/smile/config.pbtxt",
        "emolens/vision/blazeface/face_detection_full_range.tflite",
        "emolens/v1/analytics_pb2_grpc.py",
        "emolens/store/migrations/versions/0001_initial.py",
    ):
        assert shipped in names, f"{shipped} missing from {wheel.name}"
    assert not [n for n in names if n.endswith((".pt", ".npz"))], "training artefacts do not belong in the wheel"
    # the runtime only: the developer tools are their own distribution (tools/, emolens-tools)
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert packages == {"emolens"}, packages
    tools = ("training", "evaluation", "bench", "dev", "soak", "peers", "synthetic", "testframes", "supervise")
    shipped_tools = [n for n in names if n.startswith("emolens/") and n.split("/")[1].removesuffix(".py") in tools]
    assert not shipped_tools, f"developer tools in the runtime wheel: {shipped_tools}"
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[platform]"],
        check=True,
        timeout=900,
        cwd=work,
        env=_clean_env(),
    )
    return venv, work


def test_installed_package_imports_from_its_own_site_packages(installed):
    venv, work = installed
    out = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import emolens, emolens.contract as c; print(emolens.__file__); print(c.default_repository())",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=work,
        env=_clean_env(),
        timeout=120,
    ).stdout.split()
    assert all(str(venv) in line and str(ROOT) not in line for line in out), out


def test_installed_analyze_finds_the_face_in_a_photo(installed, astronaut):
    venv, work = installed
    photo = work / "astronaut.jpg"
    cv2.imwrite(str(photo), astronaut)
    result = subprocess.run(
        [str(venv / "bin" / "emolens"), "analyze", str(photo)],
        capture_output=True,
        text=True,
        cwd=work,
        env=_clean_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and '"emotions"' in lines[0] and '"smile"' in lines[0], result.stdout


def test_installed_runtime_has_no_tools_and_says_how_to_get_them(installed):
    """`emolens bench` from the runtime wheel alone: one line, at once, instead of minutes of work
    and then a missing module. With the tools' wheel (tools/) installed beside it, the same
    `emolens` command finds their verbs through the `emolens.tools` entry points."""
    venv, work = installed
    result = subprocess.run(
        [str(venv / "bin" / "emolens"), "bench", "--only", "precision"],
        capture_output=True,
        text=True,
        cwd=work,
        env=_clean_env(),
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: `emolens bench` is a developer tool of emolens-tools, which is not installed here: "
        "in a checkout, `make install-dev` (or pip install -e tools)"
    ], result.stderr
    dist = work / "tools-dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(work / "source" / "tools")],
        check=True,
        timeout=600,
    )
    (wheel,) = dist.glob("emolens_tools-*.whl")
    info = wheel.name.removesuffix("-py3-none-any.whl") + ".dist-info"
    assert {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()} == {"emolens_tools", info}
    # its own dependency is the runtime installed already; the train extra is not needed for `dev --help`
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(wheel)]
    subprocess.run(pip, check=True, timeout=300, cwd=work, env=_clean_env())
    helped = subprocess.run(
        [str(venv / "bin" / "emolens"), "dev", "--help"],
        capture_output=True,
        text=True,
        cwd=work,
        env=_clean_env(),
        timeout=120,
    )
    assert helped.returncode == 0 and helped.stdout.startswith("usage: emolens dev"), helped.stderr


def test_installed_gateway_answers_analyze_image(installed, astronaut):
    venv, work = installed
    port = _free_port()
    server = subprocess.Popen(
        [str(venv / "bin" / "emolens"), "gateway", "--port", str(port), "--db", f"sqlite:///{work / 'gw.db'}"],
        cwd=work,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=120)
        stub = analytics_pb2_grpc.AnalyticsStub(channel)
        image = cv2.imencode(".jpg", astronaut)[1].tobytes()
        deadline = time.monotonic() + 60
        while True:  # the port opens before the servicer has loaded its models
            try:
                response = stub.AnalyzeImage(analytics_pb2.AnalyzeImageRequest(image=image), timeout=60)
                break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert len(response.faces) == 1
        assert sum(response.faces[0].emotions) == pytest.approx(1.0, abs=1e-3)
        channel.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_the_release_files_carry_the_licence_and_pass_twine_check(tmp_path):
    """The sdist and the wheel a release uploads: each holds the Apache-2.0 LICENSE the metadata
    names, and `twine check` accepts both (the README renders as the package's page)."""
    source = copy_checkout(tmp_path / "source")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "-q", "--outdir", str(dist), str(source)], check=True, timeout=900)
    (wheel,) = dist.glob("emolens-*.whl")
    (sdist,) = dist.glob("emolens-*.tar.gz")
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names), names
    import tarfile

    with tarfile.open(sdist) as tar:
        assert any(n.endswith("/LICENSE") for n in tar.getnames())
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
