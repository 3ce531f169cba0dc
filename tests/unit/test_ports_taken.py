"""A service whose health or metrics port is taken says which setting to change, in one line
(before: `error: cannot write to standard output (Address already in use)`, which a pod of the
chart printed on every restart when two pods shared the host's network)."""

import os
import socket
import subprocess
import sys

import pytest

from emolens.errors import ConfigError
from emolens.metrics import serve_metrics


@pytest.fixture
def taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def test_a_taken_metrics_port_is_a_setting_error(taken_port):
    with pytest.raises(ConfigError, match=f"metrics port 127.0.0.1:{taken_port}.*EMOLENS_METRICS_PORT"):
        serve_metrics(taken_port, "127.0.0.1")


def test_a_taken_health_port_is_a_setting_error(taken_port):
    from emolens.services.loop import Health

    with pytest.raises(ConfigError, match=f"health port 127.0.0.1:{taken_port}.*EMOLENS_HEALTH_PORT"):
        Health(taken_port, "detector", 120.0, "127.0.0.1")


def test_the_cli_names_the_taken_port_not_standard_output(taken_port, tmp_path):
    env = {
        **os.environ,
        "EMOLENS_METRICS_PORT": str(taken_port),
        "EMOLENS_OPS_HOST": "127.0.0.1",
        "EMOLENS_DB": f"sqlite:///{tmp_path}/s.db",
        "EMOLENS_BUS": "memory://",
    }
    run = subprocess.run(
        [sys.executable, "-m", "emolens", "aggregate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode != 0
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("error:")]
    assert lines and "EMOLENS_METRICS_PORT" in lines[0], run.stderr[-2000:]
    assert "standard output" not in run.stderr
