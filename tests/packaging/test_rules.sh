#!/usr/bin/env bash
# test_rules.sh SOURCE_ROOT - the Prometheus alert rules load (promtool check rules),
# their unit tests pass (promtool test rules), and the Grafana dashboard is valid JSON
# whose queries only use metric names sluice exports (SPEC.md "Metrics and health").
# Exit 77 (meson: skipped) without promtool.
set -euo pipefail
src=$1
command -v promtool >/dev/null || { echo "SKIP: promtool not installed"; exit 77; }
promtool check rules "$src/packaging/grafana/sluice-alerts.yml"
promtool test rules "$src/packaging/grafana/sluice-alerts.test.yml"
python3 - "$src" <<'PY'
import json, re, sys
src = sys.argv[1]
# What sluice exports (SPEC.md "Metrics and health" plus src/http.c); a typo in a query
# would otherwise just draw an empty panel or never fire.
known = {"sluice_mqtt_messages_total", "sluice_mqtt_connected", "sluice_kafka_connected",
         "sluice_spool_records", "sluice_spool_bytes", "sluice_spool_oldest_age_seconds",
         "sluice_spool_state", "sluice_kafka_delivered_total", "sluice_kafka_errors_total",
         "sluice_dropped_total", "sluice_dead_letter_total", "sluice_forward_bytes_total",
         "sluice_delivery_latency_seconds_bucket", "sluice_build_info"}
d = json.load(open(src + "/packaging/grafana/sluice-dashboard.json"))
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
exprs.append(d["templating"]["list"][1]["definition"])
rules = open(src + "/packaging/grafana/sluice-alerts.yml").read()
used = {m for e in exprs + [rules] for m in re.findall(r"\bsluice_[a-z_]+", e)}
used = {m for m in used if not m.startswith("sluice_alerts")}
unknown = used - known
assert not unknown, f"unknown metric names: {sorted(unknown)}"
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), "duplicate panel ids"
print(f"ok: dashboard {len(d['panels'])} panels, {len(exprs)} queries; all metric names known")
PY
