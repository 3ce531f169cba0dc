#!/usr/bin/env bash
# `make images`: builds the services and models images with podman, and checks that the services
# image runs read-only as uid 10001 and holds what it must (and nothing it must not).
#
# Bases: the official ones (python:3.11.7-slim-bookworm, busybox) when a container registry
# answers; otherwise a Debian bookworm base made here with debootstrap from the machine's own
# Debian mirror (python3, python3-venv, CA certificates; about 130 MB), imported as
# localhost/emolens-base:bookworm, and for the models image Debian's static busybox alone
# (2 MB, localhost/emolens-busybox:bookworm). BASE=local or BASE=official forces one.
#
# Needs root for podman and debootstrap (it installs Debian's podman, runc and debootstrap when
# they are missing). Podman runs with runc, the cgroupfs cgroup manager and raised default
# ulimits, from a containers.conf in .tools/containers/ (CONTAINERS_CONF), so it works in a
# container-less sandbox as well as on a workstation.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
SERVICES_TAG=${SERVICES_TAG:-emolens/emolens:$VERSION}
MODELS_TAG=${MODELS_TAG:-emolens/emolens-models:$VERSION}
LOCAL_BASE=localhost/emolens-base:bookworm
LOCAL_MODELS_BASE=localhost/emolens-busybox:bookworm
BASE=${BASE:-auto}
OFFICIAL_PYTHON=python:3.11.7-slim-bookworm
OFFICIAL_MODELS=busybox:1.36.1

say() { echo "images: $*" >&2; }

need_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  if [ "$BASE" != official ]; then command -v debootstrap >/dev/null || missing+=(debootstrap); fi
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
      say "error: needs ${missing[*]} (Debian: apt-get install podman runc debootstrap, as root)"
      exit 1
    fi
    say "installing ${missing[*]} (Debian packages)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  fi
}

podman_conf() {
  mkdir -p .tools/containers
  cat > .tools/containers/containers.conf <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  export CONTAINERS_CONF=$PWD/.tools/containers/containers.conf
}

# The machine's Debian mirror, as apt knows it (deb822 sources or the classic list).
debian_mirror() {
  local m=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$m" ] || { say "error: no Debian mirror found in /etc/apt (needed for the local base)"; exit 1; }
  echo "$m"
}

local_base() {
  if podman image exists "$LOCAL_BASE"; then
    say "base $LOCAL_BASE (made earlier; 'podman rmi $LOCAL_BASE' to make it again)"
    return
  fi
  local root
  root=$(mktemp -d)
  trap 'rm -rf "$root"' RETURN
  say "making $LOCAL_BASE with debootstrap (about 2 minutes)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$(debian_mirror)" >/dev/null
  rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
  # the build machine's CA bundle: pip inside the build reaches its index as this machine does
  cp /etc/ssl/certs/ca-certificates.crt "$root"/etc/ssl/certs/ca-certificates.crt
  tar -C "$root" -c . | podman import --change 'CMD ["/bin/bash"]' - "$LOCAL_BASE" >/dev/null 2>&1
}

local_models_base() {
  if podman image exists "$LOCAL_MODELS_BASE"; then
    return
  fi
  local root
  root=$(mktemp -d)
  trap 'rm -rf "$root"' RETURN
  say "making $LOCAL_MODELS_BASE from Debian's busybox-static"
  (cd "$root" && apt-get download busybox-static >/dev/null 2>&1 && dpkg -x busybox-static_*.deb rootfs)
  mkdir -p "$root"/rootfs/tmp
  for tool in sh cp ls cat test mkdir; do ln -s busybox "$root/rootfs/bin/$tool"; done
  tar -C "$root"/rootfs -c . | podman import --change 'CMD ["/bin/sh"]' - "$LOCAL_MODELS_BASE" >/dev/null 2>&1
}

registry_answers() {
  timeout 60 podman pull -q "$OFFICIAL_PYTHON" >/dev/null 2>&1 && timeout 60 podman pull -q "$OFFICIAL_MODELS" >/dev/null 2>&1
}

build() {
  local python_image=$1 models_image=$2
  local args=(--network host --build-arg "PYTHON_IMAGE=$python_image" --build-arg "MODELS_IMAGE=$models_image")
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    args+=(--build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
  fi
  say "building $SERVICES_TAG from $python_image"
  podman build -q "${args[@]}" --target services -t "$SERVICES_TAG" . >/dev/null
  say "building $MODELS_TAG from $models_image"
  podman build -q "${args[@]}" --target models -t "$MODELS_TAG" . >/dev/null
  podman image prune -f >/dev/null  # the build stage's layers
}

check() {
  # read-only root, uid 10001, no capabilities: the services image runs as the chart runs it
  local run=(podman run --rm --read-only --user 10001:10001 --cap-drop ALL --network none "$SERVICES_TAG")
  "${run[@]}" --version >/dev/null
  local probe
  probe=$(podman run --rm --read-only --user 10001:10001 --network none --entrypoint python3 "$SERVICES_TAG" -c '
import importlib.util as u, os
import emolens.services.gateway, emolens.services.detector, emolens.services.aggregator, emolens.services.ingest
import cv2, onnxruntime, grpc, kafka, redis, psycopg, tritonclient.grpc
bad = [m for m in ("torch", "skimage", "emolens_tools") if u.find_spec(m)]
print("uid", os.getuid(), "forbidden", ",".join(bad) or "none")')
  say "services image: $probe"
  case "$probe" in *"uid 10001 forbidden none"*) ;; *) say "error: the services image is not what it must be"; exit 1 ;; esac
  podman run --rm --network none --entrypoint sh "$MODELS_TAG" -c 'test -s /model_repository/smile/1/model.onnx && test -s /model_repository/emotion/1/model.onnx'
  for tag in "$SERVICES_TAG" "$MODELS_TAG"; do
    say "$tag: $(podman image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
  done
}

need_tools
podman_conf
if [ "${CONF_ONLY:-}" = 1 ]; then exit 0; fi  # scripts/kube_check.py --no-build: podman's settings only
case "$BASE" in
  official) build "$OFFICIAL_PYTHON" "$OFFICIAL_MODELS" ;;
  local) local_base; local_models_base; build "$LOCAL_BASE" "$LOCAL_MODELS_BASE" ;;
  auto)
    if registry_answers; then
      build "$OFFICIAL_PYTHON" "$OFFICIAL_MODELS"
    else
      say "no container registry answers: using a base made here"
      local_base
      local_models_base
      build "$LOCAL_BASE" "$LOCAL_MODELS_BASE"
    fi
    ;;
  *) say "error: BASE must be auto, local or official, got '$BASE'"; exit 1 ;;
esac
check
