"""`emolens dev up` supervises its stack (docs/reliability.md, "The stack heals itself"): the real
command line, the real servers and services, killed with SIGKILL as a crash would.

    pytest -m fault tests/integration/test_supervision.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emolens_tools import dev
from tests.conftest import ROOT
from tests.integration.conftest import TRITON_VENV, wait_until

# the runtime and the developer tools (`emolens dev`) of this checkout, for the processes it starts
TOOLS_PATH = os.pathsep.join([str(ROOT), str(ROOT / "tools")])
pytestmark = pytest.mark.fault

LIMIT, WINDOW = 3, 60  # crashes within seconds before the supervisor gives up on a service


def emolens_dev(work: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EMOLENS_TRITON_VENV": str(TRITON_VENV), "PYTHONPATH": TOOLS_PATH}
    # the services inherit these: a stage stuck for 3 s is stuck, checked every second
    env.update({"EMOLENS_PIPELINE_STALL_S": "3", "EMOLENS_HEALTH_INTERVAL": "1"})
    cmd = [sys.executable, "-m", "emolens", "dev", *args, "--workdir", str(work)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def services(work: Path) -> dict[str, dict]:
    state = dev.read_state(work)
    assert state is not None
    return {s["name"]: s for s in state["services"]}


def alive(pid: int) -> bool:
    return dev._alive(pid)


def supervisor_log(work: Path) -> str:
    return (work / "logs" / "supervisor.log").read_text()


@pytest.fixture(scope="module")
def up(services_dir) -> Iterator[Path]:
    work = services_dir / "up"
    policy = ["--restart-limit", str(LIMIT), "--restart-window", str(WINDOW), "--restart-backoff", "0.5"]
    done = emolens_dev(work, "up", *policy)
    assert done.returncode == 0, done.stdout + done.stderr
    yield work
    emolens_dev(work, "down", "--wipe")


def _restarted(work: Path, name: str, old_pid: int, restarts: int) -> bool:
    s = services(work)[name]
    return s["pid"] != old_pid and s["restarts"] == restarts and s["status"] == "running" and alive(s["pid"])


@pytest.mark.parametrize("name", ["detector", "aggregator", "gateway", "triton", "kafka"])
def test_a_killed_service_is_restarted_and_the_restart_counted(up, name):
    before = services(up)[name]
    os.kill(before["pid"], signal.SIGKILL)
    wait_until(f"{name} restarted", lambda: _restarted(up, name, before["pid"], before["restarts"] + 1), 90)
    assert f"event=restarted service={name} restarts={before['restarts'] + 1}" in supervisor_log(up)
    status = emolens_dev(up, "status")
    assert status.returncode == 0, status.stdout
    line = next(x for x in status.stdout.splitlines() if x.startswith(name))
    assert f"restarts {before['restarts'] + 1}" in line and "last exit: signal 9" in line


def _mode(path: str) -> str:
    return oct(os.stat(path).st_mode & 0o777)


def test_a_crashed_triton_leaves_no_shared_memory_and_later_regions_are_private_too(up):
    """Triton's python backend passes face crops through /dev/shm regions it creates 0644. A
    Triton killed by a crash leaves its regions behind (before: they stayed until reboot, and
    the restarted one made new ones beside them); a region made after start (before: only the
    ones there at start were made 0600) is made private by the supervisor."""
    before = services(up)["triton"]
    regions = dev._shared_memory_of(before["pid"])
    assert regions and {_mode(r) for r in regions} == {"0o600"}
    os.kill(before["pid"], signal.SIGKILL)
    wait_until("triton restarted", lambda: _restarted(up, "triton", before["pid"], before["restarts"] + 1), 90)
    assert not [r for r in regions if os.path.exists(r)], "the crashed server's regions are still there"
    after = services(up)["triton"]
    new = dev._shared_memory_of(after["pid"])
    assert new and {_mode(r) for r in new} == {"0o600"}
    late = Path(f"/dev/shm/{dev.shm_prefix(Path(after['workdir']))}late-region")
    late.write_bytes(b"\0" * 64)  # as a model process the backend restarts would make one
    os.chmod(late, 0o644)
    try:
        wait_until("a late region made private", lambda: _mode(str(late)) == "0o600", 5, 0.1)
    finally:
        late.unlink(missing_ok=True)


def test_a_crash_loop_is_given_up_with_a_clear_message_and_up_retries_it(up):
    def agg() -> dict:
        return services(up)["aggregator"]

    for _ in range(LIMIT):  # crashes within the window (an earlier test's kill may count too)
        wait_until("aggregator running or given up", lambda: agg()["status"] == "gave-up" or alive(agg()["pid"]), 60)
        if agg()["status"] == "gave-up":
            break
        pid = agg()["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_until("the crash noticed", lambda pid=pid: agg()["pid"] != pid or agg()["status"] == "gave-up", 60)
    wait_until("given up", lambda: services(up)["aggregator"]["status"] == "gave-up", 60)
    assert "event=gave_up service=aggregator crashes=3" in supervisor_log(up)
    status = emolens_dev(up, "status")
    assert status.returncode == 1 and "gave-up" in status.stdout
    again = emolens_dev(up, "up")  # `make up` when it is up: what is down comes back
    assert again.returncode == 0, again.stdout + again.stderr
    assert services(up)["aggregator"]["status"] == "running" and alive(services(up)["aggregator"]["pid"])


def test_up_again_replaces_a_dead_supervisor_and_restarts_only_what_is_down(up):
    state = dev.read_state(up)
    assert state is not None
    before = services(up)
    os.kill(int(state["supervisor"]), signal.SIGKILL)
    os.kill(before["gateway"]["pid"], signal.SIGKILL)
    wait_until("gateway gone", lambda: not alive(before["gateway"]["pid"]), 10)
    status = emolens_dev(up, "status")
    assert status.returncode == 1 and "DOWN" in status.stdout  # not "already up"
    again = emolens_dev(up, "up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "services_down=gateway" in again.stderr
    after = services(up)
    assert after["gateway"]["pid"] != before["gateway"]["pid"] and alive(after["gateway"]["pid"])
    assert after["gateway"]["restarts"] == before["gateway"]["restarts"] + 1
    for name in ("postgres", "redis", "kafka", "triton", "detector", "aggregator"):
        assert after[name]["pid"] == before[name]["pid"], name  # adopted, not restarted
    new_state = dev.read_state(up)
    assert new_state is not None and alive(int(new_state["supervisor"]))
    os.kill(after["detector"]["pid"], signal.SIGKILL)  # and the new supervisor supervises
    wait_until(
        "detector restarted",
        lambda: _restarted(up, "detector", after["detector"]["pid"], after["detector"]["restarts"] + 1),
        60,
    )


def test_down_keeps_the_statistics_and_down_wipe_deletes_them(services_dir):
    import psycopg

    work = services_dir / "keep"

    def db_url() -> str:
        return services(work)["postgres"]["url"].replace("postgresql+psycopg://", "postgresql://")

    assert emolens_dev(work, "up").returncode == 0
    with psycopg.connect(db_url(), autocommit=True) as conn:
        conn.execute("INSERT INTO cameras (camera_id, site, zone) VALUES ('kept-cam', 'site-a', 'zone-a')")
    pids = [s["pid"] for s in services(work).values()]
    ports = {name: s["spec"]["ports"] for name, s in services(work).items()}
    triton = services(work)["triton"]
    # what a Triton killed before `down` leaves behind (the supervisor's restart made new ones)
    leftover = Path(f"/dev/shm/{dev.shm_prefix(Path(triton['workdir']))}crashed-region")
    leftover.write_bytes(b"\0" * 64)
    down = emolens_dev(work, "down")
    assert down.returncode == 0 and "statistics kept" in down.stdout
    assert not any(alive(pid) for pid in pids)
    assert not leftover.exists() and not dev.regions_of(dev.shm_prefix(Path(triton["workdir"])))
    assert emolens_dev(work, "up").returncode == 0
    with psycopg.connect(db_url()) as conn:
        assert conn.execute("SELECT site FROM cameras WHERE camera_id = 'kept-cam'").fetchone() == ("site-a",)
    # the same addresses as before `down` (before: new free ports on every `up`)
    assert {name: s["spec"]["ports"] for name, s in services(work).items()} == ports
    assert emolens_dev(work, "down", "--wipe").returncode == 0
    assert not (work / "postgres").exists()


def _health(port: int, name: str) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status


def test_the_gateway_says_the_pipeline_is_stuck_while_the_detector_is_frozen_and_frames_pile_up(up, demo_clip):
    """A detector that stopped moving (SIGSTOP: alive to its supervisor, dead to the work) while
    frames arrive: the gateway's ``emolens.pipeline`` goes NOT_SERVING (its own readiness stays
    SERVING: it still answers from its store), and SERVING again once the detector catches up."""
    from grpc_health.v1 import health_pb2

    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    gateway = services(up)["gateway"]
    port = gateway["spec"]["ports"][0]
    wait_until("pipeline serving", lambda: _health(port, "emolens.pipeline") == serving, 60)
    assert _health(port, "liveness") == serving
    detector = services(up)["detector"]
    os.kill(detector["pid"], signal.SIGSTOP)
    try:
        env = {**os.environ, **gateway["spec"]["env"], "PYTHONPATH": TOOLS_PATH}
        ingest = [sys.executable, "-m", "emolens", "ingest", "--source", str(demo_clip), "--camera-id", "stuck-cam"]
        subprocess.run([*ingest, "--zone", "z", "--site", "s"], env=env, check=True, timeout=120, capture_output=True)
        wait_until("pipeline stuck", lambda: _health(port, "emolens.pipeline") == not_serving, 60)
        assert _health(port, "emolens.pipeline.detector") == not_serving
        assert _health(port, "") == serving  # the gateway itself still answers from its data
        status = emolens_dev(up, "status")  # before: "running", exit 0
        line = next(x for x in status.stdout.splitlines() if x.startswith("detector"))
        assert status.returncode == 1 and "frozen" in line, status.stdout
    finally:
        os.kill(detector["pid"], signal.SIGCONT)
    wait_until("pipeline moving again", lambda: _health(port, "emolens.pipeline") == serving, 120)
    assert _health(port, "emolens.pipeline.aggregator") == serving
