"""Soak run: the embedded platform fed a live camera faster than it can analyse, for minutes,
to show that memory stays flat because ingest sheds frames instead of queueing them.

    python -m emolens_tools.soak --minutes 4 --out docs/soak.json      # also writes docs/soak.svg

A local MJPEG server (multipart HTTP, as IP cameras serve) plays the demo clip's frames in a
loop at a fixed rate on 127.0.0.1. First the sustainable rate is measured (frames analysed per
second when the source is faster than that); then the server plays at ``--overload`` times that
rate for ``--minutes``, and the process's resident memory, frames analysed and frames shed are
sampled every second.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2

from emolens import metrics
from emolens.demo import write_demo_clip
from emolens.inference import make_classifier
from emolens.media import iter_video
from emolens.runner import run_embedded
from emolens.settings import Settings
from emolens.store import Camera, SqlStore


def rss_mb() -> float:
    """Resident memory of this process (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PacedMjpegServer:
    """Plays ``jpegs`` in a loop as an MJPEG stream at ``fps`` on a free loopback port."""

    def __init__(self, jpegs: list[bytes], fps: float) -> None:
        self.jpegs, self.fps = jpegs, fps
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.sent = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                t0, i = time.monotonic(), 0
                while True:
                    jpeg = outer.jpegs[i % len(outer.jpegs)]
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                        self.wfile.write(f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                    except OSError:
                        return
                    outer.sent += 1
                    i += 1
                    delay = t0 + i / outer.fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _counter(c: Any) -> float:
    """A labelled counter's value, read through prometheus_client's public ``collect()``."""
    return sum(s.value for m in c.collect() for s in m.samples if s.name.endswith("_total"))


def run(
    seconds: float, fps: float, jpegs: list[bytes], workdir: Path, sample: bool, max_backlog: int | None = None
) -> dict[str, object]:
    """Serve at ``fps`` for ``seconds`` into an embedded run; samples once a second.
    ``max_backlog`` (default: ingest's) far above what the run reaches turns backpressure off."""
    server = PacedMjpegServer(jpegs, fps)
    settings = Settings.from_env(fps=fps)
    store = SqlStore(f"sqlite:///{workdir / f'soak-{fps:.0f}.db'}")
    stop = threading.Event()
    analysed = metrics.FRAMES.labels("detector", "in")
    shed = metrics.SHED.labels("ingest", "backlog")
    a0, s0 = _counter(analysed), _counter(shed)
    samples: list[dict[str, float]] = []
    result: dict[str, object] = {}

    def go() -> None:
        summary = run_embedded(
            server.url,
            Camera("soak"),
            store,
            settings,
            stop=stop,
            classifier=make_classifier(settings.inference),
            max_backlog=max_backlog,
        )
        result["summary"] = summary.__dict__

    thread = threading.Thread(target=go, daemon=True)
    t0 = time.monotonic()
    thread.start()
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        if sample:
            samples.append(
                {
                    "t": round(time.monotonic() - t0, 1),
                    "rss_mb": round(rss_mb(), 1),
                    "analysed": _counter(analysed) - a0,
                    "shed": _counter(shed) - s0,
                    "served": server.sent,
                }
            )
    stop.set()
    thread.join(timeout=60)
    server.close()
    store.close()
    elapsed = time.monotonic() - t0
    return {
        "fps_served": fps,
        "seconds": round(elapsed, 1),
        "analysed_per_s": round((_counter(analysed) - a0) / elapsed, 1),
        "shed": _counter(shed) - s0,
        "served": server.sent,
        "samples": samples,
        **result,
    }


def svg_plot(series: dict[str, list[dict[str, float]]], title: str) -> str:
    """Resident memory over time, one line per named series, as a self-contained SVG chart."""
    w, h, pad = 640, 280, 52
    colours = ("#1f77b4", "#d62728", "#2ca02c")
    tmax = max(x["t"] for samples in series.values() for x in samples)
    ymax = max(x["rss_mb"] for samples in series.values() for x in samples) * 1.15

    def x(t: float) -> float:
        return pad + (w - 2 * pad) * t / tmax

    def y(v: float) -> float:
        return h - pad - (h - 2 * pad) * v / ymax

    parts = [f'<rect width="{w}" height="{h}" fill="white"/>']
    for v in (ymax * k / 4 for k in range(5)):
        parts.append(f'<line x1="{pad}" x2="{w - pad}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{pad - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{v:.0f}</text>')
    for t in (tmax * k / 4 for k in range(5)):
        parts.append(f'<text x="{x(t):.1f}" y="{h - pad + 16}" text-anchor="middle" font-size="11">{t:.0f}</text>')
    for i, (name, samples) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        points = " ".join(f"{x(p['t']):.1f},{y(p['rss_mb']):.1f}" for p in samples)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{pad + 8}" y="{pad - 14 + 14 * i}" font-size="11" fill="{colour}">{name}</text>')
    parts.append(f'<text x="{w / 2}" y="16" text-anchor="middle" font-size="13">{title}</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle" font-size="11">seconds</text>')
    parts.append(f'<text x="14" y="{h / 2}" font-size="11" transform="rotate(-90 14 {h / 2})">resident MB</text>')
    head = f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">'
    return head + "".join(parts) + "</svg>\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--overload", type=float, default=3.0, help="served rate / sustainable rate")
    parser.add_argument("--measure-seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=Path("docs", "soak.json"))
    parser.add_argument(
        "--control-seconds", type=float, default=60.0, help="then the same overload with backpressure off (0: skip)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        clip = write_demo_clip(workdir / "clip.mp4", seconds=6.0, fps=10)
        jpegs = [cv2.imencode(".jpg", f.image)[1].tobytes() for f in iter_video(str(clip))]
        probe = run(args.measure_seconds, 200.0, jpegs, workdir, sample=False)
        sustainable = float(probe["analysed_per_s"])  # type: ignore[arg-type]
        served = round(sustainable * args.overload, 1)
        print(f"sustainable {sustainable} frames/s; serving {served} frames/s for {args.minutes} min", flush=True)
        soak = run(args.minutes * 60, served, jpegs, workdir, sample=True)
        control = (
            run(args.control_seconds, served, jpegs, workdir, sample=True, max_backlog=10**9)
            if args.control_seconds
            else None
        )
    report = {
        "sustainable_fps": sustainable,
        "overload": args.overload,
        "probe": probe,
        "soak": soak,
        "control": control,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    samples: list[dict[str, float]] = soak["samples"]  # type: ignore[assignment]
    title = f"embedded run, live source at {args.overload:g}x the sustainable rate ({served:g} frames/s)"
    series = {"backpressure on (shedding)": samples}
    if control is not None:
        series["backpressure off (control)"] = control["samples"]  # type: ignore[assignment]
    args.out.with_suffix(".svg").write_text(svg_plot(series, title))
    first, last = samples[len(samples) // 10], samples[-1]
    print(
        f"rss {first['rss_mb']} MB at {first['t']} s -> {last['rss_mb']} MB at {last['t']} s; "
        f"analysed {soak['analysed_per_s']} frames/s; shed {soak['shed']:.0f} of {soak['served']} served"
    )
    if control is not None:
        c: list[dict[str, float]] = control["samples"]  # type: ignore[assignment]
        a, b = c[0], c[-1]
        print(f"control, backpressure off: rss {a['rss_mb']} MB at {a['t']} s -> {b['rss_mb']} MB at {b['t']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
