#!/bin/sh
# run-edge.sh - sluice's ingest rate with a plain route, with `where:` and with
# `aggregate:`, all in one run (QoS 1, 200-byte JSON, 100 devices).
#
# Usage: bench/run-edge.sh [BUILD_DIR] [edge.py options]   (default: build)
#   e.g. bench/run-edge.sh build --count 30000 --json out.json
# Needs mosquitto on PATH. Builds nothing: configure and build first (ninja -C build).
set -eu
build=build
case "${1:-}" in ""|-*) ;; *) build=$1; shift ;; esac
for b in sluice tools/sluice-loadgen tools/sluice-mock-kafka; do
    if [ ! -x "$build/$b" ]; then
        echo "run-edge.sh: $build/$b not found; build first (ninja -C $build)" >&2
        exit 1
    fi
done
command -v mosquitto >/dev/null 2>&1 || { echo "run-edge.sh: mosquitto not on PATH" >&2; exit 1; }
exec python3 "$(dirname "$0")/edge.py" --build "$build" "$@"
