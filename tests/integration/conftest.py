"""Real servers for the integration tests, started once per session on free loopback ports
and stopped by PID at the end (emolens_tools.dev, the code behind `emolens dev up`)."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from emolens.contract import default_repository
from emolens_tools import dev
from tests.conftest import ROOT

# Triton's own virtualenv stays in the checkout's .tools/ wherever pytest is started from.
TRITON_VENV = ROOT / ".tools" / "triton-venv"


def topic_configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    """The configs the broker reports for ``topics``. ``config_filter="all"``: Tansu reports
    the configs a topic was created with as its defaults, which Kafka's "modified" filter hides."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics], config_filter="all"
        )
    finally:
        admin.close()
    return {name: {k: v["value"] for k, v in configs.items()} for name, configs in described["topic"].items()}


@pytest.fixture(scope="session")
def services_dir():
    d = Path(tempfile.mkdtemp(prefix="emolens-it-"))
    d.chmod(0o755)  # the postgres user must reach its data folder inside
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(services_dir):
    svc = dev.start_postgres(services_dir / "pg")
    yield svc.url
    dev.stop(svc)


@pytest.fixture
def own_postgres_url(postgres_url) -> Iterator[str]:
    """A database of its own on the session's server, dropped after the test: for tests that
    make partitions (year 1, 9999) or constraints that other modules must not see."""
    from sqlalchemy import create_engine, text

    name = f"own_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url(services_dir):
    svc = dev.start_redis(services_dir / "redis")
    yield svc.url
    dev.stop(svc)


@pytest.fixture(scope="session")
def kafka_url(services_dir):
    svc = dev.start_kafka(services_dir / "kafka")
    yield svc.url
    dev.stop(svc)


@pytest.fixture(scope="session")
def triton_url(services_dir):
    from emolens.inference.triton_repo import write_cpu_repository

    venv = dev.install_triton(TRITON_VENV)
    repo = write_cpu_repository(default_repository(), services_dir / "triton-repo")
    svc = dev.start_triton(services_dir / "triton", repo, venv)
    yield svc.url
    dev.stop(svc)


def wait_until(what: str, ok: Callable[[], bool], timeout_s: float = 240, every_s: float = 0.2) -> None:
    """Poll ``ok`` until it is true; a dependency may be down on purpose meanwhile, so an
    exception from ``ok`` counts as not yet."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ok():
                return
        except Exception:
            pass
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")
