"""Drive Debian's chromium headless over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: JSON messages separated by NUL bytes on file descriptors 3 and 4),
so a test needs neither a websocket client nor a debugging port.

    python -m tests.chromium screenshot report.html docs/report.png   # a full-page PNG

Debian's ``chromium`` package; ``emolens dev install`` (which ``make test`` runs) installs it.

:func:`open_page` loads a file and returns what the page logged (console calls, uncaught
exceptions, browser log entries such as a blocked resource or a CSP violation), every network
request it made, and the answers of JavaScript expressions evaluated after load.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    console: list[dict[str, Any]] = field(default_factory=list)  # Runtime.consoleAPICalled params
    exceptions: list[dict[str, Any]] = field(default_factory=list)  # Runtime.exceptionThrown params
    log_entries: list[dict[str, Any]] = field(default_factory=list)  # Log.entryAdded entries
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    values: dict[str, Any] = field(default_factory=dict)  # expression -> its value
    screenshot: bytes | None = None

    @property
    def errors(self) -> list[str]:
        """Everything a developer console would show in red (or yellow: warnings count too)."""
        out = [
            f"console.{c['type']}: {c.get('args')}" for c in self.console if c["type"] in ("error", "warning", "assert")
        ]
        out += [f"exception: {e['exceptionDetails'].get('text')}" for e in self.exceptions]
        out += [
            f"log {e['level']} {e.get('source')}: {e.get('text')}"
            for e in self.log_entries
            if e["level"] in ("error", "warning")
        ]
        return out


log = logging.getLogger(__name__)


class BrowserExited(RuntimeError):
    """The browser process ended while a command was due."""


class _Pipe:
    def __init__(self, browser: str, profile: Path, width: int, height: int) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def child_fds() -> None:  # the browser reads commands on 3 and writes answers on 4
            high_r, high_w = os.dup(to_browser_r), os.dup(from_browser_w)  # neither may clobber the other
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        args = [
            browser,
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",  # the test may run as root, where the sandbox refuses to start
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            args,
            pass_fds=(3, 4),  # kept open through the close of every other descriptor
            preexec_fn=child_fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            err = self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ""
            raise BrowserExited(f"chromium exited before {method}: {err}") from None
        return self._next_id

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise BrowserExited(
                        f"chromium exited: {self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ''}"
                    )
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline)
            if msg.get("id") == wanted:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev["method"] == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline)
            if msg.get("method") == method:
                return msg
            if "method" in msg:
                self.events.append(msg)

    def drain(self, seconds: float) -> None:
        """Collect events for a little while (late console messages, failed loads)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                msg = self._read(deadline)
                if "method" in msg:
                    self.events.append(msg)
        except TimeoutError:
            return

    def close(self) -> None:
        with contextlib.suppress(OSError, BrowserExited):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by its handle
            self.proc.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)


def open_page(
    path: Path,
    expressions: list[str] = (),  # type: ignore[assignment]
    screenshot: bool = False,
    width: int = 1100,
    height: int = 900,
    browser: str | None = None,
) -> PageReport:
    """Load ``path`` in a fresh headless chromium and report what happened."""
    browser = browser or find_chromium()
    if not browser:
        raise FileNotFoundError("chromium is not installed")
    report = PageReport()
    with tempfile.TemporaryDirectory(prefix="emolens-chromium-") as profile:
        pipe = _Pipe(browser, Path(profile), width, height)
        try:
            try:
                target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            except BrowserExited as exc:
                # Seen once on a loaded CI machine: chromium gone before its first answer, so
                # before it loaded anything of ours. One fresh start; a second exit is a failure.
                log.warning("event=chromium_restart reason=%s", str(exc)[:300])
                pipe.close()
                pipe = _Pipe(browser, Path(profile), width, height)
                target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.call(f"{domain}.enable", session=session)
            pipe.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
            pipe.wait_event("Page.loadEventFired", timeout=60)
            pipe.drain(0.5)
            for expr in expressions:
                answer = pipe.call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=session)
                if "exceptionDetails" in answer:
                    raise RuntimeError(f"{expr}: {answer['exceptionDetails']}")
                report.values[expr] = answer["result"].get("value")
            if screenshot:
                shot = pipe.call(
                    "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session
                )
                report.screenshot = base64.b64decode(shot["data"])
            pipe.drain(0.2)
        finally:
            pipe.close()
    for ev in pipe.events:
        params = ev.get("params", {})
        if ev["method"] == "Runtime.consoleAPICalled":
            report.console.append({"type": params["type"], "args": [a.get("value") for a in params.get("args", [])]})
        elif ev["method"] == "Runtime.exceptionThrown":
            report.exceptions.append(params)
        elif ev["method"] == "Log.entryAdded":
            report.log_entries.append(params["entry"])
        elif ev["method"] == "Network.requestWillBeSent":
            report.requests.append(params["request"]["url"])
    return report


def screenshot(html: Path, png: Path, width: int = 1100) -> None:
    """A full-page PNG of ``html`` (the docs' picture of a report)."""
    page = open_page(html, ["document.documentElement.scrollHeight"], width=width)
    height = int(page.values["document.documentElement.scrollHeight"])
    shot = open_page(html, screenshot=True, width=width, height=height)
    assert shot.screenshot is not None
    png.write_bytes(shot.screenshot)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "screenshot":
        screenshot(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit("usage: python -m tests.chromium screenshot REPORT.html OUT.png")
