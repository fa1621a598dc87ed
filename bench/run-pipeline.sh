#!/bin/sh
# run-pipeline.sh - end-to-end throughput of sluice against a bare Paho subscriber and
# the naive `mosquitto_sub | kcat` pipeline, plus the backlog drain rate, all in one run.
#
# Usage: bench/run-pipeline.sh [BUILD_DIR] [pipeline.py options]   (default: build)
#   e.g. bench/run-pipeline.sh build --count 50000 --backlog 300000 --json out.json
# Needs mosquitto, mosquitto_sub and kcat on PATH. Builds nothing: configure and build
# first (ninja -C build). Takes a few minutes; prints a table and ratios.
set -eu
build=build
case "${1:-}" in ""|-*) ;; *) build=$1; shift ;; esac
for b in sluice tools/sluice-loadgen tools/sluice-kcheck tools/sluice-mock-kafka bench/bare_sub; do
    if [ ! -x "$build/$b" ]; then
        echo "run-pipeline.sh: $build/$b not found; build first (ninja -C $build)" >&2
        exit 1
    fi
done
for t in mosquitto mosquitto_sub kcat; do
    command -v "$t" >/dev/null 2>&1 || { echo "run-pipeline.sh: $t not on PATH" >&2; exit 1; }
done
exec python3 "$(dirname "$0")/pipeline.py" --build "$build" "$@"
