#!/usr/bin/env bash
# build.sh - build the sluice container image with buildah and smoke-test it.
#
#   packaging/container/build.sh [TAG]          (default tag: sluice)
#
# Needs buildah (and podman or buildah to list images); no Docker engine. When the
# Debian base image is not in local container storage and cannot be pulled (an
# offline CI box), it is made from scratch with debootstrap and imported. Runs as
# root (buildah --isolation chroot, debootstrap). Exit 0 = image built, `sluice
# --version` and `sluice check` pass inside it.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-sluice}
base=docker.io/library/debian:bookworm-slim
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
start=$(date +%s)

say() { echo "build.sh: $*" >&2; }

ctrs=()
rootfs=""
cleanup() {
  for c in "${ctrs[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  [ -z "$rootfs" ] || rm -rf "$rootfs"
}
trap cleanup EXIT

if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  if [ "${SLUICE_PULL_BASE:-0}" = 1 ] && buildah pull -q "$base" >/dev/null 2>&1; then
    say "pulled $base"
  else
    command -v debootstrap >/dev/null || { say "no $base locally and no debootstrap"; exit 1; }
    say "no $base in local storage: making it with debootstrap (minbase) from $mirror"
    rootfs=$(mktemp -d /tmp/sluice-rootfs.XXXXXX)
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
    # As in the official image: updates and security suites, no apt caches.
    cat > "$rootfs/etc/apt/sources.list" <<SRC
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
    # As in the official -slim image: no docs, man pages or locales, now or later.
    cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
CFG
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/* \
           "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
           "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/*.log
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
      -exec rm -rf {} +
    tar -C "$rootfs" -c . | podman import -q - "$base" >/dev/null
    rm -rf "$rootfs"; rootfs=""
    say "imported $base ($(( $(date +%s) - start )) s so far)"
  fi
fi

# --format docker: OCI image config has no HEALTHCHECK, the Docker one does.
buildah bud --isolation chroot --network host --pull-never --format docker \
  --layers=false -q -t "$tag" . >/dev/null
say "built $tag in $(( $(date +%s) - start )) s"

ctr=$(buildah from -q "$tag"); ctrs+=("$ctr")
buildah run --isolation chroot "$ctr" -- sluice --version
buildah run --isolation chroot "$ctr" -- sluice check -c /etc/sluice/sluice.yaml >/dev/null
say "sluice --version and sluice check pass inside the image"

# The image is what the Dockerfile promises: non-root, volume, port, healthcheck.
cfg=$(buildah inspect --type image --format '{{.Docker.Config.User}}|{{.Docker.Config.Volumes}}|{{.Docker.Config.ExposedPorts}}|{{.Docker.Config.Healthcheck.Test}}' "$tag")
say "image config: $cfg"
case $cfg in
  10001:10001\|*/var/lib/sluice*\|*9187/tcp*\|*sluice\ health*) ;;
  *) say "image config is not what the Dockerfile says"; exit 1 ;;
esac
uid=$(buildah run --isolation chroot --user 10001:10001 "$ctr" -- sh -c 'id -u; test -w /var/lib/sluice && echo writable')
[ "$uid" = $'10001\nwritable' ] || { say "spool directory not writable by uid 10001: $uid"; exit 1; }

size=$(buildah images --format '{{.Size}}' "$tag" | head -n1)
say "image $tag: $size ($(( $(date +%s) - start )) s in all)"
