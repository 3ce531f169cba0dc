# emolens developer entry points. Everything runs from a project-local virtualenv (.venv).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed


.PHONY: images kube-check helm-check up down status protos demo test test-unit lint format train evaluate bench install install-dev clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Runtime install: the package as a user gets it (models, detector weights and gRPC code inside).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[demo]'
	touch $(STAMP)

## gRPC/protobuf code in emolens/v1/ is generated from protos/ and committed (as grpc projects
## do, so a wheel or a git install needs no code generator); never edited by hand.
## tests/unit/test_packaging.py fails when it is out of date.
protos: $(VENV)/.installed-dev
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. protos/emolens/v1/*.proto

## The developer tools are a distribution of their own (tools/: emolens-tools, package
## emolens_tools), installed beside the runtime; the runtime wheel carries none of them.
$(VENV)/.installed-dev: $(STAMP) tools/pyproject.toml
	$(BIN)/pip install -q -e '.[demo,platform]' -e './tools[train]' --group dev
	touch $@

install: $(STAMP)
install-dev: $(VENV)/.installed-dev

## The README's first command: build a demo clip from a photo scikit-image ships, run the whole
## embedded platform on it, print the per-minute statistics, write an annotated video.
demo: $(STAMP)
	$(BIN)/emolens demo --out demo

## The README's second command: every test (CI runs exactly this through .ci/run).
test: $(VENV)/.installed-dev
	$(BIN)/emolens dev install
	./scripts/install-helm.sh >/dev/null
	$(BIN)/python -m pytest -q -ra

test-unit: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m "not integration and not data and not fuzz"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check emolens tools scripts tests
	$(BIN)/ruff format --check emolens tools scripts tests
	$(BIN)/mypy emolens tools/emolens_tools
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_unit_sizes.py

format: $(VENV)/.installed-dev
	$(BIN)/ruff format emolens tools scripts tests
	$(BIN)/ruff check --fix emolens tools scripts tests

## The whole recipe on a 2-core CPU (times measured on a shared machine, docs/experiments.md):
## 1. the emotion teacher, a ResNet of 265 M multiply-adds, 60 epochs: 2.7 h (a few minutes with
##    --device cuda). Each epoch rewrites tools/emolens_tools/training/teachers/emotion.pt, so a rerun on any
##    machine continues from the committed snapshot; once finished it only re-reads it.
## 2. smile, three networks: the teacher's weights fine-tuned on SMILEsmileD with audited labels and
##    FER2013's faces as partial labels (happy: smile), 8 epochs: about 15 min on a quiet machine (1 h
##    when shared); two VGG-style networks from scratch on SMILEsmileD, 40 epochs each: about 17 min each.
## 3. emotion: the teacher's network fine-tuned 5 epochs on 80% re-cut crops, distilled from the
##    teacher, with SMILEsmileD's faces as partial labels, exported with its mirrored view: about 20 min.
## Resumable: rerun to continue. Checkpoints live in ~/.cache/emolens/train.
train: $(VENV)/.installed-dev
	$(BIN)/python scripts/train.py --task emotion --teacher
	$(BIN)/python scripts/train.py --task smile
	$(BIN)/python scripts/train.py --task emotion

## The model card (docs/model-card.md, docs/evaluation.json) and the benchmarks (docs/benchmarks.md, .json).
evaluate: $(VENV)/.installed-dev
	$(BIN)/emolens evaluate

bench: $(VENV)/.installed-dev
	$(BIN)/emolens bench

## The container images (podman; from a Debian base made here when no container registry answers):
## emolens/emolens (services, read-only root, uid 10001) and emolens/emolens-models (Triton's models).
images:
	./scripts/images.sh

## The chart's pods on this machine with podman (scripts/kube_check.py): images, the dev servers on
## loopback, helm template for one machine, podman kube play, ingest -> stats over TLS with a token,
## a killed pod restarted, torn down to nothing. About 5 minutes; needs root (podman).
kube-check: $(VENV)/.installed-dev
	$(BIN)/python scripts/kube_check.py

## The chart: lint, render with default and production values, validate against Kubernetes 1.30 and 1.33.
HELM = .tools/bin/helm
CHART = helm/emolens
helm-check: $(VENV)/.installed-dev
	./scripts/install-helm.sh >/dev/null
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) -f $(CHART)/values-production.yaml
	mkdir -p .tools/rendered
	$(HELM) template emolens $(CHART) > .tools/rendered/default.yaml
	$(HELM) template emolens $(CHART) -f $(CHART)/values-production.yaml > .tools/rendered/production.yaml
	for k in 1.30.0 1.33.0; do for f in default production; do \
	  $(BIN)/kubernetes-validate --strict --quiet -k $$k .tools/rendered/$$f.yaml || exit 1; done; done
	@echo "helm-check: lint, render and schema validation clean (CRDs: ScaledObject, ServiceMonitor have no built-in schema)"

## Start / stop the real servers on loopback under a supervisor that restarts whatever exits
## (state in .run/services.json; `make status` shows restarts). `make up` again restarts what is
## down; `make down` keeps the statistics (PostgreSQL's data), `make down WIPE=1` deletes them.
up: $(VENV)/.installed-dev
	$(BIN)/python -c "from pathlib import Path; from emolens.demo import write_demo_clip; write_demo_clip(Path('demo/demo.mp4'))"
	$(BIN)/emolens dev up --workdir .run --source demo/demo.mp4

status:
	$(BIN)/emolens dev status --workdir .run

down:
	$(BIN)/emolens dev down --workdir .run $(if $(WIPE),--wipe)

clean:
	rm -rf demo .pytest_cache .mypy_cache .ruff_cache
