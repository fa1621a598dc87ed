#!/usr/bin/env bash
# test_container.sh SOURCE_ROOT - build the container image and smoke-test it
# (packaging/container/build.sh). Exit 77 (meson: skipped) without buildah.
set -euo pipefail
if ! command -v buildah >/dev/null; then
  echo "SKIP: buildah not installed"
  exit 77
fi
exec "$1/packaging/container/build.sh" sluice-test
