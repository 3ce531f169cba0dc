# syntax=docker/dockerfile:1.7
# The services image (ingest, detector, aggregator, gateway, db migrations) and, as a separate
# target, the models image that Triton's init container copies model_repository/ out of.
# Models are NOT baked into the services image: the detector calls Triton for them.
#
#   make images        (podman; a Debian base made here when no container registry answers)
#   docker build --target services -t emolens/emolens:0.1.0 .
#   docker build --target models   -t emolens/emolens-models:0.1.0 .
#
# Any base with Python 3.11 as `python3`, its venv module and CA certificates works: the
# official slim image by default, or the Debian base `scripts/images.sh` makes with debootstrap
# (PYTHON_IMAGE and MODELS_IMAGE as build arguments).

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
ARG MODELS_IMAGE=busybox:1.36.1

# ---- build: the same wheel a user installs (models, detector weights and gRPC code inside),
# with its `platform` dependencies, into a virtualenv the runtime stage copies whole
FROM ${PYTHON_IMAGE} AS build
# the build machine's CA bundle, where pip reaches its index through a proxy that re-signs
# (scripts/images.sh passes it; empty: pip's own certificates)
ARG PIP_CERT=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=${PIP_CERT}
WORKDIR /src
RUN python3 -m venv /opt/emolens
COPY pyproject.toml README.md LICENSE ./
COPY emolens/ emolens/
RUN /opt/emolens/bin/pip install --no-compile '.[platform]' \
 && find /opt/emolens -name '__pycache__' -prune -exec rm -rf {} + \
 && rm -rf /opt/emolens/lib/python3*/site-packages/pip /opt/emolens/lib/python3*/site-packages/setuptools \
           /opt/emolens/bin/pip*

# ---- services: runtime only, non-root, read-only root (writes only to /tmp); no compiler, no
# pip, no torch. OpenCV is the headless wheel: no libGL.
FROM ${PYTHON_IMAGE} AS services
# HOME: where libraries keep their small state (onnxruntime's telemetry id); /tmp is the one
# writable place on a read-only root
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/emolens/bin:${PATH} HOME=/tmp
RUN (getent group emolens || groupadd --gid 10001 emolens) \
 && (id -u emolens 2>/dev/null || useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin emolens)
COPY --from=build /opt/emolens /opt/emolens
# Each service's container entry and default configuration (services/<name>/); the chart's
# pods run /opt/emolens/services/<name>/entrypoint.sh.
COPY --chmod=0755 services/ /opt/emolens/services/
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["emolens"]
CMD ["--help"]

# ---- models: model_repository/ for Triton (config.pbtxt with dynamic batching, labels, ONNX)
FROM ${MODELS_IMAGE} AS models
# (model_repository/ at the top of the checkout links to emolens/model_repository/)
COPY emolens/model_repository/smile/config.pbtxt emolens/model_repository/smile/labels.txt /model_repository/smile/
COPY emolens/model_repository/smile/1/model.onnx /model_repository/smile/1/
COPY emolens/model_repository/emotion/config.pbtxt emolens/model_repository/emotion/labels.txt /model_repository/emotion/
COPY emolens/model_repository/emotion/1/model.onnx /model_repository/emotion/1/
USER 10001:10001
