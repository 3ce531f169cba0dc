"""Real servers for the integration tests, started once per session on free loopback ports
and stopped by PID at the end (scripts/devservices.py)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("devservices", ROOT / "scripts" / "devservices.py")
devservices = importlib.util.module_from_spec(_spec)
sys.modules["devservices"] = devservices  # dataclasses look their module up there
_spec.loader.exec_module(devservices)


@pytest.fixture(scope="session")
def services_dir():
    d = Path(tempfile.mkdtemp(prefix="emolens-it-"))
    d.chmod(0o755)  # the postgres user must reach its data folder inside
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(services_dir):
    svc = devservices.start_postgres(services_dir / "pg")
    yield svc.url
    devservices.stop(svc)


@pytest.fixture(scope="session")
def redis_url(services_dir):
    svc = devservices.start_redis(services_dir / "redis")
    yield svc.url
    devservices.stop(svc)


@pytest.fixture(scope="session")
def kafka_url(services_dir):
    svc = devservices.start_kafka(services_dir / "kafka")
    yield svc.url
    devservices.stop(svc)


@pytest.fixture(scope="session")
def triton_url(services_dir):
    from emolens.inference.triton_repo import write_cpu_repository

    venv = devservices.install_triton()
    repo = write_cpu_repository(ROOT / "model_repository", services_dir / "triton-repo")
    svc = devservices.start_triton(services_dir / "triton", repo, venv)
    yield svc.url
    devservices.stop(svc)
