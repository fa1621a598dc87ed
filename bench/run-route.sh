#!/bin/sh
# run-route.sh - runs the routing benchmark from an existing build directory.
#
# Usage: bench/run-route.sh [BUILD_DIR]   (default: build)
# Builds nothing: configure and build first, e.g. `meson setup build && ninja -C build`.
# Prints, per router size, trie and linear-scan lookups/s and their ratio, all
# measured in this one run, so the ratio is what to compare across machines.
set -eu
build=${1:-build}
bin=$build/bench/bench_route
if [ ! -x "$bin" ]; then
    echo "run-route.sh: $bin not found; build first (ninja -C $build)" >&2
    exit 1
fi
exec "$bin"
