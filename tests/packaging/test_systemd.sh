#!/usr/bin/env bash
# test_systemd.sh SOURCE_ROOT SLUICE_BIN - the systemd unit and sysusers file are valid.
#
#   1. systemd-analyze verify on a copy of the unit whose Exec lines point at the
#      built binary (verify insists they exist). verify exits 0 on unknown keys and
#      unparsable values (it only warns), so any output at all fails the test.
#   2. systemd-analyze security --offline: the hardening stays at exposure <= 2.0.
#   3. systemd-sysusers creates the sluice user in a scratch root.
# Exit 77 (meson: skipped) when systemd-analyze is missing.
set -euo pipefail
src=$1 bin=$2
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

sed -e "s#/usr/bin/sluice#$bin#g" "$src/packaging/systemd/sluice.service" > "$tmp/sluice.service"
out=$(systemd-analyze verify "$tmp/sluice.service" 2>&1) || { echo "$out"; echo "FAIL: verify"; exit 1; }
if [ -n "$out" ]; then
  echo "$out"; echo "FAIL: systemd-analyze verify warned"; exit 1
fi
echo "ok: systemd-analyze verify"

if systemd-analyze security --help 2>&1 | grep -q -- '--offline'; then
  if ! out=$(systemd-analyze security --offline=yes --threshold=20 "$tmp/sluice.service" 2>&1); then
    echo "$out"; echo "FAIL: exposure above 2.0"; exit 1
  fi
  echo "ok: $(echo "$out" | grep 'Overall exposure')"
fi

if command -v systemd-sysusers >/dev/null; then
  mkdir -p "$tmp/root/etc"
  systemd-sysusers --root="$tmp/root" "$src/packaging/systemd/sluice.sysusers.conf" >/dev/null 2>&1
  grep -q '^sluice:x:[0-9]*:[0-9]*:.*:/var/lib/sluice:/usr/sbin/nologin$' "$tmp/root/etc/passwd" \
    || { cat "$tmp/root/etc/passwd"; echo "FAIL: sysusers did not create sluice"; exit 1; }
  echo "ok: systemd-sysusers creates sluice"
fi
