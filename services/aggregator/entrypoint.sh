#!/bin/sh
# Container entry of the aggregator service: the chart's aggregator pods run this (image: Dockerfile target
# services, copied to /opt/emolens/services/). defaults.env sets what the pod's environment
# leaves unset; extra arguments go to `emolens aggregate`.
set -eu
set -a  # export what defaults.env sets
. "$(dirname "$0")/defaults.env"
set +a
exec emolens aggregate "$@"
