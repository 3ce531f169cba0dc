"""A frozen service (SIGSTOP: alive to ``kill -0``, doing nothing) is not "running": `emolens dev
status` says frozen, and the supervisor kills and restarts one frozen past its liveness timeout,
as Kubernetes does when a liveness probe gets no answer. Real processes."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time

from emolens_tools import dev
from emolens_tools.supervise import RUNNING, Child, RestartPolicy, Supervisor, exit_status, is_frozen

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_status_shows_a_stopped_service_as_frozen_and_not_healthy(tmp_path):
    proc = subprocess.Popen(SLEEPER, start_new_session=True)
    try:
        service = {"name": "detector", "url": "detect", "pid": proc.pid, "workdir": str(tmp_path)}
        state = {"supervisor": os.getpid(), "phase": "up", "services": [{**service, "status": RUNNING}]}
        state["services"][0].update(restarts=0, last_exit="")
        out = io.StringIO()
        assert dev.print_status(state, out) is True and "detector   running" in out.getvalue()
        os.kill(proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not is_frozen(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        out = io.StringIO()
        assert dev.print_status(state, out) is False  # before: "running", healthy
        assert "detector   frozen" in out.getvalue()
    finally:
        proc.kill()
        proc.wait()


def test_the_supervisor_restarts_a_service_frozen_past_its_liveness_timeout():
    sup = Supervisor(
        [Child("worker", lambda: subprocess.Popen(SLEEPER, start_new_session=True).pid)],
        RestartPolicy(base_s=0.1, frozen_s=1.0),
    )
    sup.start_all()
    child = sup.children["worker"]
    first = child.pid
    try:
        os.kill(first, signal.SIGSTOP)
        started = time.monotonic()
        deadline = started + 10
        while child.restarts == 0 and time.monotonic() < deadline:
            sup.tick()
            time.sleep(0.05)
        waited = time.monotonic() - started
        assert child.restarts == 1 and child.pid != first, "a frozen service was left as it was"
        assert waited >= 1.0  # not before its timeout
        assert child.last_exit.startswith("frozen") and exit_status(first) is not None
        assert child.status == RUNNING and not is_frozen(child.pid)
    finally:
        sup.stop_all()


def test_a_short_pause_is_not_a_crash():
    sup = Supervisor(
        [Child("worker", lambda: subprocess.Popen(SLEEPER, start_new_session=True).pid)],
        RestartPolicy(base_s=0.1, frozen_s=5.0),
    )
    sup.start_all()
    child = sup.children["worker"]
    try:
        os.kill(child.pid, signal.SIGSTOP)  # as the broker recycle pauses the services
        for _ in range(10):
            sup.tick()
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGCONT)
        for _ in range(5):
            sup.tick()
            time.sleep(0.05)
        assert child.restarts == 0 and child.frozen_since == 0.0 and exit_status(child.pid) is None
    finally:
        sup.stop_all()


def test_an_adopted_service_that_dies_is_not_reported_as_a_plain_exit():
    """A service adopted from an earlier supervisor is not this one's child: how it ended (a
    kill -9, say) only its parent saw. Before, `dev status` said `exited`, as if it had ended by
    itself; now it says the status was not seen."""
    from emolens_tools.supervise import NOT_OURS

    spawner = subprocess.run(
        ["sh", "-c", f"{sys.executable} -c 'import time; time.sleep(120)' >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = int(spawner.stdout.strip())  # its parent, the shell, is gone: not our child
    sup = Supervisor(
        [Child("svc", lambda: subprocess.Popen(SLEEPER, start_new_session=True).pid)], RestartPolicy(base_s=0.1)
    )
    try:
        assert sup.adopt({"svc": orphan}) == []
        os.kill(orphan, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while sup.children["svc"].restarts == 0 and time.monotonic() < deadline:
            sup.tick()
            time.sleep(0.05)
        child = sup.children["svc"]
        assert child.restarts == 1 and child.last_exit == NOT_OURS and "unseen" in child.last_exit
    finally:
        sup.stop_all()
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)
