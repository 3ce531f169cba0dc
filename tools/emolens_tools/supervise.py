"""Keep a set of processes running: a child that exits is started again with exponential
backoff; a child that crashes ``limit`` times within ``window_s`` is given up on, with one
clear log line, until someone asks for it again (:meth:`Supervisor.retry_given_up`).

This is what Kubernetes does for the chart; ``emolens dev up`` runs it for the local stack
(emolens_tools.dev). Children may be our own (exit code known) or daemons we only know by PID
(PostgreSQL's postmaster, Redis): both are watched by PID.

    >>> import sys
    >>> sup = Supervisor([Child("once", lambda: _spawn([sys.executable, "-c", "pass"]), restart="on-failure")])
    >>> sup.start_all()
    >>> for _ in range(40):  # it exits 0 at once: a job, done, not restarted
    ...     sup.tick(); time.sleep(0.05)
    >>> sup.children["once"].status, sup.children["once"].restarts
    ('done', 0)
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from emolens import logs

log = logging.getLogger(__name__)

RUNNING, BACKOFF, GAVE_UP, DONE, STOPPED = "running", "backoff", "gave-up", "done", "stopped"
NOT_OURS = "exited (status unseen: not this supervisor's child)"
FROZEN = "frozen"  # shown for a running child that is stopped (SIGSTOP): alive, doing nothing


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff ``base_s`` * 2^(n-1) up to ``max_s`` for the n-th crash within ``window_s``;
    ``limit`` crashes within ``window_s`` and the child is given up on. A child frozen
    (stopped by SIGSTOP) for ``frozen_s`` fails its liveness as a Kubernetes probe would (no
    answer) and is killed and restarted like a crash (0: never)."""

    base_s: float = 1.0
    max_s: float = 30.0
    limit: int = 5
    window_s: float = 120.0
    frozen_s: float = 120.0  # the services' liveness timeout (EMOLENS_LIVENESS_TIMEOUT_S)

    def delay(self, crashes: int) -> float:
        """Seconds to wait before the restart that follows ``crashes`` recent crashes.

        >>> [RestartPolicy().delay(n) for n in (1, 2, 3, 6, 9)]
        [1.0, 2.0, 4.0, 30.0, 30.0]
        """
        return float(min(self.base_s * 2 ** max(crashes - 1, 0), self.max_s))


@dataclass
class Child:
    """One supervised process: ``start()`` starts it and returns its PID; ``stop(pid)`` stops
    it. ``restart``: "always" (a service), or "on-failure" (a job such as ingesting a clip,
    done when it exits 0)."""

    name: str
    start: Callable[[], int]
    stop: Callable[[int], None] = field(default=lambda pid: _terminate(pid))
    restart: str = "always"
    pid: int = 0
    status: str = STOPPED
    restarts: int = 0
    last_exit: str = ""
    next_start: float = 0.0
    crashes: deque[float] = field(default_factory=deque)
    frozen_since: float = 0.0  # monotonic time it was first seen stopped (0: not stopped)


def _spawn(cmd: list[str]) -> int:
    return subprocess.Popen(cmd, start_new_session=True).pid


def _terminate(pid: int, timeout_s: float = 10) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + timeout_s
        while exit_status(pid) is None and time.monotonic() < end:
            time.sleep(0.1)
        if exit_status(pid) is None:
            os.kill(pid, signal.SIGKILL)


def is_frozen(pid: int) -> bool:
    """True when ``pid`` is stopped (SIGSTOP, or a debugger): alive to ``kill -0``, doing nothing."""
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]  # noqa: SIM115
    except (OSError, IndexError):
        return False
    return state in ("T", "t")


def exit_status(pid: int) -> str | None:
    """None while ``pid`` runs; else how it ended ("code 1", "signal 9", or NOT_OURS for a
    process that is not our child, such as a daemon or one adopted from an earlier supervisor:
    only its parent saw its status, and it is not guessed)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: look it up
        try:
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]  # noqa: SIM115
        except OSError:
            return NOT_OURS
        return NOT_OURS if state in ("Z", "X") else None
    if done == 0:
        return None
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"code {os.WEXITSTATUS(status)}"


class Supervisor:
    """Watches ``children`` (start them with :meth:`start_all` or adopt running ones with
    :meth:`adopt`); :meth:`tick` checks each once and restarts what is due. ``on_change`` is
    called after any change of state (emolens_tools.dev writes its state file there)."""

    def __init__(
        self,
        children: list[Child],
        policy: RestartPolicy | None = None,
        on_change: Callable[[Supervisor], None] | None = None,
    ) -> None:
        self.children = {c.name: c for c in children}
        self.policy = policy or RestartPolicy()
        self.on_change = on_change or (lambda _: None)

    def _changed(self) -> None:
        self.on_change(self)

    def start_all(self) -> None:
        for child in self.children.values():
            self._start(child, first=True)
            self._changed()  # recorded as it goes: whoever stops a half-started stack finds it

    def adopt(self, pids: dict[str, int]) -> list[str]:
        """Take over children already running under ``pids`` (a supervisor that was itself
        restarted); start the others. Returns the names that were down and got started."""
        started = []
        for child in self.children.values():
            pid = pids.get(child.name, 0)
            if pid and exit_status(pid) is None:
                child.pid, child.status = pid, RUNNING
            else:
                logs.event(log.warning, "found_down", service=child.name, pid=pid, action="start")
                started.append(child.name)
                self._start(child, first=False)
        self._changed()
        return started

    def _start(self, child: Child, first: bool) -> None:
        try:
            child.pid = child.start()
        except Exception as exc:  # a start that fails is a crash like any other
            child.pid = 0
            self._crashed(child, f"start failed: {type(exc).__name__}: {exc}")
            return
        child.status = RUNNING
        if not first:
            child.restarts += 1
            logs.event(log.warning, "restarted", service=child.name, restarts=child.restarts, pid=child.pid)

    def _crashed(self, child: Child, how: str) -> None:
        now = time.monotonic()
        child.last_exit = how
        child.crashes.append(now)
        while child.crashes and now - child.crashes[0] > self.policy.window_s:
            child.crashes.popleft()
        if len(child.crashes) >= self.policy.limit:
            child.status = GAVE_UP
            logs.event(
                log.error,
                "gave_up",
                service=child.name,
                crashes=len(child.crashes),
                window_s=self.policy.window_s,
                last_exit=how,
                hint="see its log; `emolens dev up` again retries it",
            )
            return
        delay = self.policy.delay(len(child.crashes))
        child.status, child.next_start = BACKOFF, now + delay
        logs.event(log.warning, "exited", service=child.name, how=how, restart_in_s=round(delay, 3))

    def tick(self) -> None:
        """Check every child once: note who died, restart who is due."""
        changed = False
        for child in self.children.values():
            if child.status == RUNNING:
                how = exit_status(child.pid)
                if how is None:
                    how = self._frozen_too_long(child)
                if how is None:
                    continue
                changed = True
                if child.restart == "on-failure" and how == "code 0":
                    child.status, child.last_exit = DONE, how
                    logs.event(log.info, "done", service=child.name)
                else:
                    self._crashed(child, how)
            if child.status == BACKOFF and time.monotonic() >= child.next_start:
                changed = True
                self._start(child, first=False)
        if changed:
            self._changed()

    def _frozen_too_long(self, child: Child) -> str | None:
        """None while ``child`` runs, or is frozen for less than the policy's ``frozen_s``;
        else it is killed, and how it ended is returned."""
        if not is_frozen(child.pid):
            child.frozen_since = 0.0
            return None
        now = time.monotonic()
        if not child.frozen_since:
            child.frozen_since = now
            logs.event(log.warning, "frozen", service=child.name, pid=child.pid, kill_in_s=self.policy.frozen_s)
        frozen_for = now - child.frozen_since
        if not self.policy.frozen_s or frozen_for < self.policy.frozen_s:
            return None
        child.frozen_since = 0.0
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)  # a stopped process dies of SIGKILL too
        end = time.monotonic() + 10
        while exit_status(child.pid) is None and time.monotonic() < end:
            time.sleep(0.05)
        return f"frozen {frozen_for:.0f} s, killed"

    def retry_given_up(self) -> list[str]:
        """Start again every child that was given up on (crash history forgotten)."""
        names = [c.name for c in self.children.values() if c.status == GAVE_UP]
        for name in names:
            child = self.children[name]
            child.crashes.clear()
            self._start(child, first=False)
        if names:
            self._changed()
        return names

    def stop_all(self) -> None:
        """Stop every child, the last started first."""
        for child in reversed(list(self.children.values())):
            if child.status == RUNNING and exit_status(child.pid) is None:
                with contextlib.suppress(Exception):
                    child.stop(child.pid)
            child.status = STOPPED
        self._changed()
