#!/bin/sh
# Container entry of the gateway service: the chart's gateway pods run this (image: Dockerfile target
# services, copied to /opt/emolens/services/). defaults.env sets what the pod's environment
# leaves unset; extra arguments go to `emolens gateway`.
set -eu
set -a  # export what defaults.env sets
. "$(dirname "$0")/defaults.env"
set +a
exec emolens gateway "$@"
