"""The Helm chart, rendered by the real helm binary (scripts/install-helm.sh) and asserted on."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emolens.settings import Settings
from tests.conftest import MODEL_REPO, ROOT

CHART = ROOT / "helm" / "emolens"
HELM = ROOT / ".tools" / "bin" / "helm"


@pytest.fixture(scope="module")
def helm():
    if not HELM.exists():
        subprocess.run([str(ROOT / "scripts" / "install-helm.sh")], check=True, capture_output=True)
    return HELM


def render(helm, *args):
    proc = subprocess.run([str(helm), "template", "t", str(CHART), *args], capture_output=True, text=True)
    return proc


def docs(helm, *args):
    proc = render(helm, *args)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module", params=["default", "production"])
def manifests(request, helm):
    if request.param == "production":
        return docs(helm, "-f", str(CHART / "values-production.yaml"))
    return docs(helm, "--set", "cameras[0].id=cam-1,cameras[0].source=rtsp://cam-1/stream")


def pod_specs(manifests):
    for d in manifests:
        if d["kind"] in ("Deployment", "Job"):
            yield d["kind"], d["metadata"]["name"], d["spec"]["template"]["spec"]


def test_gpu_requested_by_triton_only(manifests):
    for _, name, spec in pod_specs(manifests):
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            res = c.get("resources", {})
            wants_gpu = "nvidia.com/gpu" in res.get("limits", {}) or "nvidia.com/gpu" in res.get("requests", {})
            assert wants_gpu == (c["name"] == "triton"), (name, c["name"])
    (triton,) = [spec for _, name, spec in pod_specs(manifests) if name.endswith("-triton")]
    assert triton["tolerations"] and triton["nodeSelector"]


def test_triton_mounts_a_repository_with_dynamic_batching(manifests):
    (triton,) = [spec for _, name, spec in pod_specs(manifests) if name.endswith("-triton")]
    (server,) = triton["containers"]
    assert "--model-repository=/models" in server["args"]
    assert any(m["mountPath"] == "/models" for m in server["volumeMounts"])
    (init,) = triton["initContainers"]
    assert init["command"] == ["cp", "-r", "/model_repository/.", "/models/"]
    # the models image is built from model_repository/ (Dockerfile target `models`), whose
    # production configs batch dynamically on GPU instances
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name in ("smile", "emotion"):
        assert f"COPY emolens/model_repository/{name}/config.pbtxt" in dockerfile
        config = (MODEL_REPO / name / "config.pbtxt").read_text()
        assert "dynamic_batching" in config and "KIND_GPU" in config and 'platform: "onnxruntime_onnx"' in config
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_probes_on_every_service_container(manifests):
    for kind, name, spec in pod_specs(manifests):
        if kind == "Job":
            continue
        for c in spec["containers"]:
            assert "readinessProbe" in c and "livenessProbe" in c, (name, c["name"])
            if c["name"] != "triton":
                assert "grpc" in c["readinessProbe"], (name, c["name"])
                # a service waiting out an outage is not ready, yet alive: not restarted
                assert c["readinessProbe"]["grpc"]["service"] == "readiness", (name, c["name"])
                assert c["livenessProbe"]["grpc"]["service"] == "liveness", (name, c["name"])


def test_no_container_runs_as_root(manifests):
    for _, name, spec in pod_specs(manifests):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc.get("runAsUser", pod["runAsUser"]) != 0, (name, c["name"])
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True


def test_configmap_names_are_the_settings_the_services_read(manifests):
    (cm,) = [d for d in manifests if d["kind"] == "ConfigMap"]
    known = set(Settings.env_names())
    assert set(cm["data"]) <= known, set(cm["data"]) - known
    for _, _, spec in pod_specs(manifests):
        for c in spec["containers"]:
            for env in c.get("env", []):
                if env["name"].startswith("EMOLENS_"):
                    assert env["name"] in known
    # and the values are ones Settings accepts
    Settings.from_env(dict(cm["data"]))


def test_the_rest_of_the_platform_is_there(manifests):
    kinds = {(d["kind"], d["metadata"]["name"]) for d in manifests}
    names = {n for _, n in kinds}
    for part in ("-detector", "-aggregator", "-gateway", "-triton", "-db-upgrade"):
        assert any(n.endswith(part) for n in names), part
    assert any("-ingest-" in n for n in names)
    assert {k for k, _ in kinds} >= {"PodDisruptionBudget", "NetworkPolicy", "ServiceAccount", "Service", "Job"}
    (job,) = [d for d in manifests if d["kind"] == "Job"]
    assert "pre-install" in job["metadata"]["annotations"]["helm.sh/hook"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]


def test_production_values(helm):
    ms = docs(helm, "-f", str(CHART / "values-production.yaml"))
    ingests = [d for d in ms if d["kind"] == "Deployment" and "-ingest-" in d["metadata"]["name"]]
    assert len(ingests) == 6
    for d in ingests:  # camera URLs with credentials come from a Secret
        env = {e["name"]: e for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert "secretKeyRef" in env["CAMERA_SOURCE"]["valueFrom"]
    assert any(d["kind"] == "ScaledObject" for d in ms)
    assert not any(d["kind"] == "HorizontalPodAutoscaler" for d in ms)  # KEDA owns scaling
    (ing,) = [d for d in ms if d["kind"] == "Ingress"]
    assert ing["spec"]["tls"][0]["secretName"] == "emolens-gateway-tls"
    # the gateway itself speaks TLS too, so the ingress talks TLS to it
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPCS"
    (triton,) = [d for d in ms if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-triton")]
    assert triton["spec"]["replicas"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "settings.fps=fast"], "fps"),
        (["--set", "gateway.port=70000"], "port"),
        (["--set", "database.url=,database.existingSecret="], "database"),
        (["--set", "cameras[0].zone=lobby"], "cameras"),  # no id, no source
        (["--set", "cameras[0].id=Bad_Name,cameras[0].source=rtsp://x"], "id"),
        (["--set", "triton.modelRepository.source=s3"], "source"),
        (["--set", "podSecurityContext.runAsNonRoot=false"], "runAsNonRoot"),
        (["--set", "kafka.bootstrap=kafka"], "bootstrap"),
        (["--set", "gateway.tls.secretName="], "insecure"),  # plaintext needs insecure: true
        (["--set", "gateway.auth.tokensSecret="], "tokensSecret"),  # no gateway without tokens
        (["--set", "gateway.tls.secretName=,gateway.insecure=true,gateway.tls.clientAuth=true"], "secretName"),
    ],
)
def test_schema_rejects_bad_values(helm, args, message):
    proc = render(helm, *args)
    assert proc.returncode != 0
    assert re.search(message, proc.stderr), proc.stderr


def _gateway(manifests):
    (spec,) = [spec for kind, name, spec in pod_specs(manifests) if kind == "Deployment" and name.endswith("-gateway")]
    (container,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    return container, env, mounts, volumes


def _mounted_from(path: str, mounts: dict, volumes: dict) -> tuple[str, str]:
    """(Secret name, key) a file path in the container comes from."""
    folder, _, name = path.rpartition("/")
    mount = mounts[folder]
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    for item in secret.get("items", [{"key": name, "path": name}]):
        if item["path"] == name:
            return secret["secretName"], item["key"]
    raise AssertionError(f"{path} is not in {secret}")


def test_gateway_reads_tls_and_tokens_from_secrets_mounted_as_files(manifests):
    container, env, mounts, volumes = _gateway(manifests)
    assert _mounted_from(env["EMOLENS_TLS_CERT"], mounts, volumes) == ("emolens-gateway-tls", "tls.crt")
    assert _mounted_from(env["EMOLENS_TLS_KEY"], mounts, volumes) == ("emolens-gateway-tls", "tls.key")
    assert _mounted_from(env["EMOLENS_TOKENS_FILE"], mounts, volumes) == ("emolens-gateway-tokens", "tokens.yaml")
    assert "EMOLENS_TLS_CLIENT_CA" not in env
    for name in ("tls", "tokens"):
        assert volumes[name]["secret"]["defaultMode"] == 0o440  # the pod's group reads, nobody else
    # secrets only as files: the environment names them, it never holds a key or a token
    assert {e["name"] for e in container["env"] if "valueFrom" in e} <= {"EMOLENS_DB", "EMOLENS_LIVE"}
    # the API port speaks TLS: Kubernetes' gRPC probes use the plaintext health port
    health = [p["containerPort"] for p in container["ports"] if p["name"] == "health"]
    assert container["readinessProbe"]["grpc"]["port"] == container["livenessProbe"]["grpc"]["port"] == health[0]
    assert "--insecure" not in container["args"] and "--reflection" not in container["args"]


def test_gateway_client_certificates_and_plaintext_behind_a_mesh(helm):
    camera = "cameras[0].id=cam-1,cameras[0].source=rtsp://cam-1/stream"
    mutual = docs(helm, "--set", f"{camera},gateway.tls.clientAuth=true,gateway.reflection=true")
    container, env, mounts, volumes = _gateway(mutual)
    assert _mounted_from(env["EMOLENS_TLS_CLIENT_CA"], mounts, volumes) == ("emolens-gateway-tls", "ca.crt")
    assert "--reflection" in container["args"]
    meshed = docs(helm, "--set", f"{camera},gateway.tls.secretName=,gateway.insecure=true")
    container, env, mounts, volumes = _gateway(meshed)
    assert "--insecure" in container["args"] and "EMOLENS_TLS_CERT" not in env and "tls" not in volumes
    assert _mounted_from(env["EMOLENS_TOKENS_FILE"], mounts, volumes) == ("emolens-gateway-tokens", "tokens.yaml")


@pytest.mark.parametrize("kube", ["1.30.0", "1.33.0"])
def test_rendered_manifests_validate_against_kubernetes(helm, tmp_path, kube):
    for name, extra in (("default", []), ("production", ["-f", str(CHART / "values-production.yaml")])):
        proc = render(helm, *extra)
        assert proc.returncode == 0, proc.stderr
        path = tmp_path / f"{name}.yaml"
        path.write_text(proc.stdout)
        check = subprocess.run(
            [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet", "-k", kube, str(path)],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("values", [[], ["-f", str(CHART / "values-production.yaml")]])
def test_helm_lint_strict(helm, values):
    proc = subprocess.run([str(helm), "lint", "--strict", str(CHART), *values], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_service_pods_run_the_entrypoints_of_services_folder(manifests):
    """Each service pod runs services/<name>/entrypoint.sh, which the image copies in, and
    that entry runs the packaged command with its defaults."""
    verbs = {"ingest": "ingest", "detector": "detect", "aggregator": "aggregate", "gateway": "gateway"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY --chmod=0755 services/ /opt/emolens/services/" in dockerfile
    seen = set()
    for _, _name, spec in pod_specs(manifests):
        for c in spec["containers"]:
            command = c.get("command") or []
            if not command or not command[0].startswith("/opt/emolens/services/"):
                continue
            service = command[0].split("/")[4]
            entry = ROOT / "services" / service / "entrypoint.sh"
            assert entry.exists() and entry.stat().st_mode & 0o111, entry
            text = entry.read_text()
            assert f"exec emolens {verbs[service]} " in text and "defaults.env" in text
            assert (ROOT / "services" / service / "README.md").exists()
            seen.add(service)
    assert seen == {"ingest", "detector", "aggregator", "gateway"}


def test_service_defaults_yield_to_the_environment(tmp_path):
    """defaults.env only fills what the pod's environment leaves unset."""
    fake = tmp_path / "emolens"
    fake.write_text('#!/bin/sh\necho "$EMOLENS_FPS $EMOLENS_BUS $*"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "EMOLENS_FPS": "2"}
    out = subprocess.run(
        [str(ROOT / "services" / "ingest" / "entrypoint.sh"), "--camera-id", "c1"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["2", "kafka://kafka:9092", "ingest", "--camera-id", "c1"]


def _configmap(manifests) -> dict[str, str]:
    (cm,) = [d for d in manifests if d["kind"] == "ConfigMap"]
    return cm["data"]


def test_every_service_pod_serves_metrics_and_prometheus_can_find_it(manifests):
    """Each emolens container has a `metrics` port on EMOLENS_METRICS_PORT; a headless
    Service per component carries it, the network policies let it in, and with
    serviceMonitor.enabled (production) a ServiceMonitor scrapes `metrics` on all of them."""
    port = int(_configmap(manifests)["EMOLENS_METRICS_PORT"])
    assert port == 9100
    pods: dict[str, dict[str, str]] = {}  # component -> pod labels
    for d in manifests:
        if d["kind"] != "Deployment":
            continue
        spec = d["spec"]["template"]
        for c in spec["spec"]["containers"]:
            if (c.get("command") or [""])[0].startswith("/opt/emolens/services/"):
                metrics = [p for p in c["ports"] if p["name"] == "metrics"]
                assert [p["containerPort"] for p in metrics] == [port], (d["metadata"]["name"], c["name"])
                pods[spec["metadata"]["labels"]["app.kubernetes.io/component"]] = spec["metadata"]["labels"]
    assert set(pods) == {"ingest", "detector", "aggregator", "gateway"}
    services = [d for d in manifests if d["kind"] == "Service"]
    scraped = {}
    for svc in services:
        names = [p["name"] for p in svc["spec"]["ports"]]
        if "metrics" not in names or svc["metadata"]["labels"].get("app.kubernetes.io/component") == "triton":
            continue
        (p,) = [p for p in svc["spec"]["ports"] if p["name"] == "metrics"]
        assert p["targetPort"] == "metrics" and svc["spec"]["clusterIP"] == "None"
        selector = svc["spec"]["selector"]
        (component,) = [c for c, labels in pods.items() if selector.items() <= labels.items()]
        scraped[component] = svc["metadata"]["labels"]
    assert set(scraped) == set(pods)
    (partner,) = [s for s in services if s["metadata"]["name"].endswith("-gateway")]
    assert [p["name"] for p in partner["spec"]["ports"]] == ["grpc"]  # /metrics never rides the API
    opened = {
        p["port"]
        for d in manifests
        if d["kind"] == "NetworkPolicy"
        for rule in d["spec"].get("ingress", [])
        if "from" not in rule
        for p in rule.get("ports", [])
    }
    assert port in opened
    monitors = [d for d in manifests if d["kind"] == "ServiceMonitor"]
    if not monitors:  # serviceMonitor.enabled is off by default
        return
    (emolens,) = [m for m in monitors if not m["metadata"]["name"].endswith("-triton")]
    wanted = emolens["spec"]["selector"]["matchLabels"]
    assert all(wanted.items() <= labels.items() for labels in scraped.values())
    assert [e["port"] for e in emolens["spec"]["endpoints"]] == ["metrics"]


def test_service_monitor_follows_its_switch(helm):
    camera = "cameras[0].id=cam-1,cameras[0].source=rtsp://cam-1/stream"
    assert not [d for d in docs(helm, "--set", camera) if d["kind"] == "ServiceMonitor"]
    on = docs(
        helm,
        "--set",
        f"{camera},serviceMonitor.enabled=true,triton.enabled=false,triton.externalUrl=triton://triton.shared:8001",
    )
    assert [d["metadata"]["name"] for d in on if d["kind"] == "ServiceMonitor"] == ["t-emolens"]


def test_topic_settings_short_frame_retention_and_production_replication(helm):
    default = _configmap(docs(helm))
    assert default["EMOLENS_FRAMES_RETENTION_MS"] == "600000"  # frames hold face pixels: minutes
    assert default["EMOLENS_KAFKA_REPLICATION"] == "1"
    assert float(default["EMOLENS_REPLAY_WINDOW_S"]) == 7 * 24 * 3600
    assert "EMOLENS_LOG_LEVEL" not in default  # the services' own default: INFO
    production = _configmap(docs(helm, "-f", str(CHART / "values-production.yaml")))
    assert production["EMOLENS_KAFKA_REPLICATION"] == "3"
    assert int(production["EMOLENS_KAFKA_PARTITIONS"]) >= 12  # KEDA may run 12 detectors
    assert int(production["EMOLENS_FRAMES_RETENTION_MS"]) <= 3_600_000
    settings = Settings.from_env(production)
    assert (settings.kafka_replication, settings.log_format) == (3, "json")


def test_retention_cronjob_is_off_by_default_and_runs_retention_apply_like_the_other_workloads(helm, tmp_path):
    assert not any(d["kind"] == "CronJob" for d in docs(helm))
    on = ["--set", "retention.enabled=true,retention.schedule=5 2 * * *"]
    ms = docs(helm, *on)
    (cron,) = [d for d in ms if d["kind"] == "CronJob"]
    assert cron["spec"]["schedule"] == "5 2 * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"] == ["retention", "apply"]
    (job,) = [d for d in ms if d["kind"] == "Job" and d["metadata"]["name"].endswith("-db-upgrade")]
    (upgrade,) = job["spec"]["template"]["spec"]["containers"]
    # the same image, settings, database secret and security as the migration job
    for key in ("image", "imagePullPolicy", "envFrom", "env", "securityContext", "volumeMounts"):
        assert container[key] == upgrade[key], key
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert any(e["name"] == "EMOLENS_DB" for e in container["env"])
    path = tmp_path / "retention.yaml"
    path.write_text(render(helm, *on).stdout)
    check = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet", "-k", "1.33.0", str(path)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    bad = render(helm, "--set", "retention.enabled=true,retention.schedule=daily")
    assert bad.returncode != 0 and re.search("schedule", bad.stderr), bad.stderr


@pytest.mark.parametrize(
    "release, prefix", [("emolens", "emolens-"), ("emolens-prod", "emolens-prod-"), ("t", "t-emolens-")]
)
def test_resource_names_hold_the_chart_name_once(helm, release, prefix):
    """Helm's usual fullname: a release whose name holds the chart's is not followed by it again
    (release "emolens" made emolens-emolens-gateway and emolens-emolens-dashboard-cameras)."""
    proc = subprocess.run(
        [
            *(str(helm), "template", release, str(CHART)),
            *("--set", "cameras[0].id=cam-1,cameras[0].source=rtsp://c/s,grafana.dashboards.enabled=true"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    manifests = [d for d in yaml.safe_load_all(proc.stdout) if d]
    names = {(d["kind"], d["metadata"]["name"]) for d in manifests}
    assert ("Deployment", f"{prefix}gateway") in names and ("ConfigMap", f"{prefix}dashboard-cameras") in names
    assert not [n for _, n in names if "emolens-emolens" in n]
    # every ConfigMap a pod reads its settings from is one the chart makes
    config_maps = {n for kind, n in names if kind == "ConfigMap"}
    for _, _, spec in pod_specs(manifests):
        for c in spec["containers"]:
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps


def test_without_its_own_triton_the_chart_needs_the_one_to_call(helm):
    """triton.enabled=false used to point the detectors at a Service the chart no longer made."""
    cmd = [str(helm), "template", "emolens", str(CHART), "--set", "triton.enabled=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "triton.externalUrl" in proc.stderr
    settings = [
        d
        for d in docs(helm, "--set", "triton.enabled=false,triton.externalUrl=triton://triton.shared:8001")
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-settings")
    ]
    assert settings[0]["data"]["EMOLENS_INFERENCE"] == "triton://triton.shared:8001"


def test_a_camera_takes_more_ingest_options(helm):
    camera = "cameras[0].id=rec-1,cameras[0].source=/rec/a.mp4,cameras[0].args={--start,2026-06-01T09:00:00Z}"
    (ingest,) = [
        d for d in docs(helm, "--set", camera) if d["kind"] == "Deployment" and "ingest" in d["metadata"]["name"]
    ]
    args = ingest["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--start", "2026-06-01T09:00:00Z"]


def _ingests(helm, cameras: list[str], groups: int) -> dict[str, tuple[str, list[str]]]:
    """Ingest Deployment name -> (its cameras checksum, the camera ids of its ConfigMap)."""
    sets = [f"ingest.groups={groups}"]
    for i, cid in enumerate(cameras):
        sets.append(f"cameras[{i}].id={cid},cameras[{i}].source=rtsp://cams/{cid}")
    manifests = docs(helm, "--set", ",".join(sets))
    files = {
        d["metadata"]["name"]: [c["id"] for c in yaml.safe_load(d["data"]["cameras.yaml"])["cameras"]]
        for d in manifests
        if d["kind"] == "ConfigMap" and "cameras.yaml" in d.get("data", {})
    }
    return {
        d["metadata"]["name"]: (
            d["spec"]["template"]["metadata"]["annotations"]["checksum/cameras"],
            files[d["spec"]["template"]["spec"]["volumes"][-1]["configMap"]["name"]],
        )
        for d in manifests
        if d["kind"] == "Deployment" and re.search(r"-ingest-g\d+$", d["metadata"]["name"])
    }


def test_cameras_spread_over_a_few_ingest_deployments_and_a_new_one_changes_one(helm):
    """1,000 cameras used to be 1,000 Deployments; with ingest.groups they are that many, each
    one `emolens ingest --cameras` process, and a camera's group depends on its id alone."""
    cameras = [f"cam-{i:03d}" for i in range(40)]
    before = _ingests(helm, cameras, 4)
    assert len(before) == 4
    assert sorted(c for _, ids in before.values() for c in ids) == cameras  # each camera once
    assert all(len(ids) >= 4 for _, ids in before.values())  # spread, not piled up
    after = _ingests(helm, [*cameras, "cam-new"], 4)
    changed = [name for name in before if before[name][0] != after[name][0]]
    assert len(changed) == 1 and "cam-new" in after[changed[0]][1]
    removed = _ingests(helm, cameras[1:], 4)
    assert len([n for n in before if before[n][0] != removed[n][0]]) == 1


def test_grouped_ingest_takes_a_source_from_a_secret(helm):
    manifests = docs(
        helm,
        "--set",
        "ingest.groups=1,cameras[0].id=door,cameras[0].sourceSecret.name=cams,cameras[0].sourceSecret.key=door",
    )
    (cm,) = [d for d in manifests if d["kind"] == "ConfigMap" and "cameras.yaml" in d.get("data", {})]
    assert yaml.safe_load(cm["data"]["cameras.yaml"])["cameras"][0]["source_env"] == "CAMERA_SOURCE_0"
    (dep,) = [d for d in manifests if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("ingest-g0")]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--cameras", "/etc/emolens/cameras/cameras.yaml"]
    (env,) = [e for e in container["env"] if e["name"] == "CAMERA_SOURCE_0"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "cams", "key": "door"}
