# syntax=docker/dockerfile:1.7
# The services image (ingest, detector, aggregator, gateway, db migrations) and, as a separate
# target, the models image that Triton's init container copies model_repository/ out of.
# Models are NOT baked into the services image: the detector calls Triton for them.
#
#   docker build --target services -t emolens/emolens:0.1.0 .
#   docker build --target models   -t emolens/emolens-models:0.1.0 .

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# ---- build: the same wheel a user installs (models, detector weights and gRPC code inside),
# plus the wheels of its `platform` dependencies
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY emolens/ emolens/
RUN pip install --upgrade pip==24.3.1 \
 && pip wheel --wheel-dir /wheels '.[platform]'

# ---- services: runtime only, non-root, read-only-root friendly (writes only to /tmp)
FROM ${PYTHON_IMAGE} AS services
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 emolens && useradd --uid 10001 --gid emolens --no-create-home emolens
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels 'emolens[platform]' \
 && rm -rf /wheels
# Each service's container entry and default configuration (services/<name>/); the chart's
# pods run /opt/emolens/services/<name>/entrypoint.sh.
COPY --chmod=0755 services/ /opt/emolens/services/
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["emolens"]
CMD ["--help"]

# ---- models: model_repository/ for Triton (config.pbtxt with dynamic batching, labels, ONNX)
FROM busybox:1.36.1 AS models
# (model_repository/ at the top of the checkout links to emolens/model_repository/)
COPY emolens/model_repository/smile/config.pbtxt emolens/model_repository/smile/labels.txt /model_repository/smile/
COPY emolens/model_repository/smile/1/model.onnx /model_repository/smile/1/
COPY emolens/model_repository/emotion/config.pbtxt emolens/model_repository/emotion/labels.txt /model_repository/emotion/
COPY emolens/model_repository/emotion/1/model.onnx /model_repository/emotion/1/
USER 10001:10001
