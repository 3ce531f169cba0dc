"""`make kube-check`: the chart's pods running on this machine, with podman instead of a kubelet.

1. `make images` builds (and checks) the services and models images.
2. PostgreSQL, Redis, the Kafka-protocol broker and Triton run as the dev servers on loopback
   (`emolens dev`'s own), since a single machine has no Services, DNS or GPU nodes.
3. The chart is rendered with `helm template` for a single machine (`single_machine_values`:
   one replica each, no NetworkPolicy or PodDisruptionBudget, the dev servers' URLs, Triton as
   `triton.externalUrl`, k-anonymity 1 for a demo of three people), and what podman's
   `kube play` cannot run is set aside and listed: Services, the ServiceAccount, the
   autoscaler. The Job (migrations) runs first, as a pod. Every pod shares the host's network
   (the servers are on loopback), so each gets its own health and metrics ports; the ingest
   pod gets the demo clip's folder as a read-only volume. Everything else is the chart's own:
   images, commands, arguments, the settings ConfigMap, the gateway's TLS and tokens Secrets,
   read-only roots, uid 10001, restart policies.
4. Checks: the ingest pod's frames reach PostgreSQL through the detector and aggregator pods
   and Triton; `QueryStats` through the gateway pod over TLS with a bearer token gives the same
   frames and faces as `emolens run` on the same clip (the ingest pod restarts after its file
   ends, as a Deployment does, and the replay window keeps the second pass from counting
   twice); a killed detector container comes back by its restart policy and the pipeline goes
   on; tearing down leaves no pod, container or secret behind.

Run as root on a machine of this kind (podman, runc and debootstrap come from Debian). About
five minutes; `--keep` leaves everything running for a look (`podman pod ps`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".tools" / "kube"
HELM = ROOT / ".tools" / "bin" / "helm"
CHART = ROOT / "helm" / "emolens"
RELEASE = "kube"
CAMERA = "kube-cam"
# what podman 4.3's `kube play` runs; the rest of the chart is listed as not run here
PLAYABLE = {"ConfigMap", "Deployment", "Secret"}  # Secrets: as files (see for_podman)
TOKEN = "kube-check-" + "0" * 16
START = "2026-06-01T09:00:00Z"


def log(msg: str) -> None:
    print(f"kube-check: {msg}", file=sys.stderr, flush=True)


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(ROOT / ".tools/containers/containers.conf")}
    run = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if check and run.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])}: {run.stderr.strip()[-2000:]}")
    return run


# ---------------------------------------------------------------- servers on loopback


def start_servers(work: Path) -> dict[str, Any]:
    from emolens.inference.triton_repo import write_cpu_repository
    from emolens_tools import dev

    dev.install()
    services = {
        "postgres": dev.start_postgres(work / "postgres"),
        "redis": dev.start_redis(work / "redis"),
        "kafka": dev.start_kafka(work / "kafka"),
    }
    repo = write_cpu_repository(ROOT / "emolens" / "model_repository", work / "triton-repo")
    with (
        open(work / "install-triton.log", "w") as out,
        contextlib.redirect_stderr(out),
        contextlib.redirect_stdout(out),
    ):
        venv = dev.install_triton()
    services["triton"] = dev.start_triton(work / "triton", repo, venv)
    return services


def stop_servers(services: dict[str, Any]) -> None:
    from emolens_tools import dev

    for svc in reversed(list(services.values())):
        dev.stop(svc)


# ---------------------------------------------------------------- the chart, for one machine


def make_pki(work: Path) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) for localhost, self-signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def single_machine_values(services: dict[str, Any], gateway_port: int) -> dict[str, Any]:
    def hostport(url: str) -> str:
        return url.split("://", 1)[1].split("/", 1)[0].split("@")[-1]

    return {
        "image": {"repository": "localhost/emolens/emolens", "tag": "0.1.0", "pullPolicy": "Never"},
        "kafka": {"bootstrap": hostport(services["kafka"].url)},
        "database": {"url": services["postgres"].url},
        "redis": {"url": services["redis"].url},
        # a recording with the start time the yardstick's run gives it: small-face sweeps follow the
        # video's clock, so the same clock gives the same faces
        "cameras": [
            {"id": CAMERA, "zone": "lobby", "site": "kube", "source": "/demo/demo.mp4", "args": ["--start", START]}
        ],
        "settings": {"kAnonymity": 1, "kafkaPartitions": 1},
        "detector": {"replicas": 1, "autoscaling": {"enabled": False}},
        "aggregator": {"replicas": 1},
        "gateway": {
            "replicas": 1,
            "port": gateway_port,
            "tls": {"secretName": "kube-gateway-tls", "clientAuth": False},
            "auth": {"tokensSecret": "kube-gateway-tokens"},
        },
        "triton": {
            "enabled": False,
            "externalUrl": f"triton://{hostport(services['triton'].url)}",
            "modelRepository": {"image": {"repository": "localhost/emolens/emolens-models", "tag": "0.1.0"}},
        },
        "podDisruptionBudget": {"enabled": False},
        "networkPolicy": {"enabled": False},
    }


def render(values: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    (work / "values.yaml").write_text(yaml.safe_dump(values))
    out = subprocess.run(
        [str(HELM), "template", RELEASE, str(CHART), "-f", str(work / "values.yaml")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _secret(name: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def _secret_folder(volume: dict[str, Any], secrets: dict[str, dict[str, bytes]], work: Path) -> Path:
    """The files a secret volume would show (its ``items``, or every key), owned by uid 10001
    with the volume's mode, in a folder of their own."""
    name = volume["secretName"]
    folder = work / "secrets" / name
    folder.mkdir(parents=True, exist_ok=True)
    data = secrets[name]
    items = volume.get("items") or [{"key": k, "path": k} for k in data]
    for item in items:
        path = folder / item["path"]
        path.write_bytes(data[item["key"]])
        os.chown(path, 10001, 10001)
        path.chmod(volume.get("defaultMode", 0o440))
    return folder


def _own_settings(configmaps: dict[str, Any], container: dict[str, Any], owner: str, port: int) -> dict[str, Any]:
    """A copy of the ConfigMap ``container`` takes its environment from, with its own health and
    metrics ports; the container is pointed at it."""
    (ref,) = [e["configMapRef"] for e in container.get("envFrom", []) if "configMapRef" in e]
    copy = json.loads(json.dumps(configmaps[ref["name"]]))
    copy["metadata"]["name"] = f"{owner}-settings"
    copy["data"]["EMOLENS_HEALTH_PORT"] = str(port)
    copy["data"]["EMOLENS_METRICS_PORT"] = str(port + 1000)
    ref["name"] = copy["metadata"]["name"]
    return copy


def _expand_variables(container: dict[str, Any]) -> None:
    """``$(NAME)`` in the command and arguments replaced by the container's own ``env`` value, as
    the kubelet does (podman passes them on literally)."""
    values = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    for key in ("command", "args"):
        container[key] = [next((v for n, v in values.items() if a == f"$({n})"), a) for a in container.get(key, [])]
        if not container[key]:
            del container[key]


def for_podman(
    docs: list[dict[str, Any]], demo_dir: Path, work: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(the migration job as a pod, what kube play runs, what it cannot: 'Kind/name')."""
    jobs, playable, skipped = [], [], []
    secrets: dict[str, dict[str, bytes]] = {}
    configmaps: dict[str, dict[str, Any]] = {}
    port = 18080
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind == "Job":
            spec = doc["spec"]["template"]["spec"]
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
            jobs.append(pod)
            continue
        if kind == "ConfigMap":
            configmaps[name] = doc
        if kind not in PLAYABLE:
            skipped.append(f"{kind}/{name}")
            continue
        if kind == "Secret":
            secrets[name] = {k: base64.b64decode(v) for k, v in doc.get("data", {}).items()}
            continue
        if kind == "Deployment":
            spec = doc["spec"]["template"]["spec"]
            spec["hostNetwork"] = True
            for volume in spec.get("volumes", []):
                if "secret" in volume:  # podman 4.3 panics on secret volumes: the same files from a folder
                    volume["hostPath"] = {
                        "path": str(_secret_folder(volume["secret"], secrets, work)),
                        "type": "Directory",
                    }
                    del volume["secret"]
            for container in spec["containers"]:
                # podman refuses port mappings on the host's network (Kubernetes takes them as
                # documentation there): the ports are the ones the services bind anyway
                container.pop("ports", None)
                # one network namespace for every pod: each its own health and metrics port, in
                # a copy of the settings ConfigMap of its own (podman lets envFrom win over env)
                own = _own_settings(configmaps, container, name, port)
                playable.append(own)
                for probe in ("readinessProbe", "livenessProbe"):
                    if "grpc" in container.get(probe, {}):
                        container[probe]["grpc"]["port"] = port
                port += 1
                _expand_variables(container)
            if doc["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "ingest":
                spec.setdefault("volumes", []).append(
                    {"name": "recordings", "hostPath": {"path": str(demo_dir), "type": "Directory"}}
                )
                spec["containers"][0].setdefault("volumeMounts", []).append(
                    {"name": "recordings", "mountPath": "/demo", "readOnly": True}
                )
        playable.append(doc)
    for pod in jobs:
        pod["spec"]["hostNetwork"] = True
    # a ConfigMap lives only within one `kube play`: the migrations' play needs its own copy
    jobs = [d for d in playable if d["kind"] == "ConfigMap"] + jobs
    return jobs, playable, skipped


# ---------------------------------------------------------------- checks


def embedded_counts(clip: Path, work: Path) -> tuple[int, int]:
    """(frames, faces) of `emolens run` on ``clip`` at the chart's fps, in one process."""
    db = work / "embedded.db"
    env = {**os.environ, "EMOLENS_K_ANONYMITY": "1"}
    subprocess.run(
        [sys.executable, "-m", "emolens", "run", "--source", str(clip), "--camera-id", CAMERA, "--fps", "5",
         "--db", f"sqlite:///{db}", "--start", START],
        check=True, env=env, capture_output=True, timeout=600,
    )  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "emolens", "stats", "--db", f"sqlite:///{db}", "--format", "json"],
        check=True, env=env, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    rows = json.loads(out)
    return sum(r["frames"] for r in rows), sum(r["faces"] for r in rows)


def bucket_rows(port: int, cert_pem: bytes) -> list[tuple[int, int, int, int]]:
    """(frames, faces, tracks, low quality) of each of the camera's buckets, from QueryStats
    through the gateway over TLS with a token."""
    import grpc

    from emolens.v1 import analytics_pb2 as pb
    from emolens.v1 import analytics_pb2_grpc

    creds = grpc.ssl_channel_credentials(root_certificates=cert_pem)
    with grpc.secure_channel(f"localhost:{port}", creds) as channel:
        reply = analytics_pb2_grpc.AnalyticsStub(channel).QueryStats(
            pb.QueryStatsRequest(camera_id=CAMERA), metadata=[("authorization", f"bearer {TOKEN}")], timeout=10
        )
    return [(b.frames, b.faces, b.tracks, b.low_quality) for b in reply.buckets]


def query_stats(port: int, cert_pem: bytes) -> tuple[int, int]:
    """(frames, faces) of the camera over all its buckets."""
    rows = bucket_rows(port, cert_pem)
    return sum(r[0] for r in rows), sum(r[1] for r in rows)


def wait_for(what: str, probe: Any, deadline_s: float) -> Any:
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        try:
            last = probe()
            if last:
                return last
        except Exception as exc:  # the gateway or a pod is still coming up
            last = exc
        time.sleep(3)
    raise RuntimeError(f"{what}: not within {deadline_s:.0f} s (last: {last!r})")


def container_of(component: str) -> str:
    names = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    (name,) = [n for n in names if n.endswith(f"-{component}") and "-pod-" in n]
    return name


def restarts(name: str) -> int:
    return int(podman("inspect", name, "--format", "{{.RestartCount}}").stdout.strip())


def running(name: str) -> bool:
    return podman("inspect", name, "--format", "{{.State.Running}}").stdout.strip() == "true"


# ---------------------------------------------------------------- main


def prepare() -> tuple[Path, tuple[int, int]]:
    """The demo clip, in a folder the ingest pod mounts, and what `emolens run` counts on it."""
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    demo_dir = WORK / "demo"
    from emolens.demo import write_demo_clip

    clip = write_demo_clip(demo_dir / "demo.mp4")
    os.chmod(demo_dir, 0o755)
    os.chmod(clip, 0o644)
    log("the same clip through `emolens run` (the yardstick)")
    expected = embedded_counts(clip, WORK)
    log(f"embedded: {expected[0]} frames, {expected[1]} faces")
    return demo_dir, expected


def write_manifests(services: dict[str, Any], demo_dir: Path, gateway_port: int, files: Files) -> bytes:
    """The chart rendered for this machine into ``files``; returns the gateway's certificate."""
    key_pem, cert_pem = make_pki(WORK)
    tokens = yaml.safe_dump({"clients": [{"name": "kube-check", "token": TOKEN, "all": True}]}).encode()
    # the Secrets a user creates beside the chart (docs/deploy.md), then the chart's own objects
    docs = [
        _secret("kube-gateway-tls", {"tls.crt": cert_pem, "tls.key": key_pem}),
        _secret("kube-gateway-tokens", {"tokens.yaml": tokens}),
        *render(single_machine_values(services, gateway_port), WORK),
    ]
    jobs, playable, skipped = for_podman(docs, demo_dir, WORK)
    log("not run here (no kubelet): " + ", ".join(skipped))
    files.jobs.write_text(yaml.safe_dump_all(jobs))
    files.pods.write_text(yaml.safe_dump_all(playable))
    log("the chart's pods: " + ", ".join(d["metadata"]["name"] for d in playable if d["kind"] == "Deployment"))
    return cert_pem


def migrate(files: Files) -> None:
    """The chart's migrations Job, as a pod, to its successful end."""
    log("migrations (the chart's Job, as a pod)")
    podman("kube", "play", str(files.jobs))
    job = next(
        n
        for n in podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
        if "db-upgrade" in n and not n.endswith("-infra")
    )
    wait_for(
        "migrations", lambda: podman("inspect", job, "--format", "{{.State.Status}}").stdout.strip() == "exited", 180
    )
    code = podman("inspect", job, "--format", "{{.State.ExitCode}}").stdout.strip()
    if code != "0":
        raise RuntimeError(f"migrations exited {code}: {podman('logs', job, check=False).stderr[-2000:]}")
    podman("kube", "down", str(files.jobs))


def check_counts(gateway_port: int, cert_pem: bytes, expected: tuple[int, int]) -> None:
    """The pods' statistics, through the gateway over TLS, equal the embedded run's."""
    got = wait_for(
        "every frame of the clip in the statistics",
        lambda: (lambda c: c if c[0] >= expected[0] else None)(query_stats(gateway_port, cert_pem)),
        600,
    )
    log(f"QueryStats over TLS with a token: {got[0]} frames, {got[1]} faces (embedded: {expected[0]}, {expected[1]})")
    if got != expected:
        raise RuntimeError(
            f"the pods counted {got}, the embedded run {expected}; pods' buckets {bucket_rows(gateway_port, cert_pem)}"
        )


def check_restarts(gateway_port: int, cert_pem: bytes, expected: tuple[int, int]) -> None:
    """A crashed detector returns by its restart policy; the ingest's replays count nothing twice."""
    detector = container_of("detector")
    before = restarts(detector)
    # a crash, not a stop: the service's process killed from outside (a `podman kill` is the
    # user's own stop, which no restart policy undoes)
    os.kill(int(podman("inspect", detector, "--format", "{{.State.Pid}}").stdout.strip()), signal.SIGKILL)
    wait_for(
        "the killed detector back by its restart policy", lambda: restarts(detector) > before and running(detector), 120
    )
    log(f"detector killed and restarted (restarts {before} -> {restarts(detector)})")
    ingest = container_of("ingest")
    wait_for("the ingest pod's second pass of its file (a Deployment restarts it)", lambda: restarts(ingest) >= 1, 300)
    time.sleep(20)
    again = query_stats(gateway_port, cert_pem)
    log(f"after the detector's restart and the ingest's replay: {again[0]} frames, {again[1]} faces")
    if again != expected:
        raise RuntimeError(f"after restarts the pods count {again}, the embedded run {expected}")


def remove_leftovers() -> None:
    """Pods of this check that an interrupted run left running (their restart policy keeps them
    up): removed first, said once, so they neither collide with this run nor count in it."""
    pods = [n for n in podman("pod", "ps", "--format", "{{.Name}}").stdout.split() if n.startswith(f"{RELEASE}-")]
    if pods:
        log(f"removing pods an interrupted run left: {', '.join(pods)}")
        podman("pod", "rm", "-f", *pods)
    for name in podman("secret", "ls", "--format", "{{.Name}}").stdout.split():
        if name.startswith(f"{RELEASE}-"):
            podman("secret", "rm", name, check=False)


def tear_down(services: dict[str, Any], files: Files) -> bool:
    """Everything down; True when nothing of the check is left."""
    for f in (files.pods, files.jobs):
        if f.exists():
            podman("kube", "down", str(f), check=False)
    stop_servers(services)
    left = [n for n in podman("ps", "-a", "--format", "{{.Names}}").stdout.split() if RELEASE in n]
    secrets = [n for n in podman("secret", "ls", "--format", "{{.Name}}").stdout.split() if n.startswith("kube-")]
    if left or secrets:
        log(f"error: left behind: {left + secrets}")
        return False
    log("torn down: no pod, container or secret left")
    return True


def show_logs() -> None:
    for name in podman("ps", "-a", "--format", "{{.Names}}", check=False).stdout.split():
        if not name.endswith("-infra"):
            log(f"--- {name}\n{podman('logs', '--tail', '15', name, check=False).stderr}")


@dataclass(frozen=True)
class Files:
    pods: Path = WORK / "kube.yaml"
    jobs: Path = WORK / "migrations.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the pods and servers running")
    parser.add_argument("--no-build", action="store_true", help="use the images built before")
    args = parser.parse_args()
    # the images (or, with --no-build, only podman's settings, which images.sh writes)
    env = {**os.environ, **({"CONF_ONLY": "1"} if args.no_build else {})}
    subprocess.run([str(ROOT / "scripts" / "images.sh")], check=True, env=env)
    subprocess.run([str(ROOT / "scripts" / "install-helm.sh")], check=True, stdout=subprocess.DEVNULL)
    remove_leftovers()
    demo_dir, expected = prepare()
    log("servers on loopback (PostgreSQL, Redis, broker, Triton)")
    services = start_servers(WORK / "servers")
    files = Files()
    ok = False
    try:
        from emolens_tools.dev import free_port

        gateway_port = free_port()
        cert_pem = write_manifests(services, demo_dir, gateway_port, files)
        migrate(files)
        podman("kube", "play", str(files.pods))
        check_counts(gateway_port, cert_pem, expected)
        check_restarts(gateway_port, cert_pem, expected)
        ok = True
    finally:
        if not ok:
            show_logs()
        if not args.keep:
            ok = tear_down(services, files) and ok
    log("passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
