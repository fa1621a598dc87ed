#!/usr/bin/env python3
"""check_schema.py SOURCE_ROOT SLUICE_BINARY

Every example config under config/ must
  1. validate against schemas/sluice.schema.json (so the schema editors use and
     sluice itself agree on what a config is), and
  2. pass `sluice check -c FILE` (exit 0).
The schema itself is checked against its metaschema first. A few known-bad snippets
must fail the schema, so a schema that accepts everything cannot pass this test.
"""
import glob
import os
import subprocess
import sys

import jsonschema
import yaml

BAD_SNIPPETS = [
    "kafak: {bootstrap: x}\n",                              # unknown key
    "mqtt: {keepalive: 30 seconds}\n",                      # bad duration
    "kafka: {properties: {acks: 1}}\n",                     # refused property
    "routes: [{name: r, match: a/b}]\n",                    # missing topic
    "spool: {when_full: block}\n",                          # unknown enum value
    "lanes: {urgent: {priority: 10}}\n",                    # out of range
]


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    root, sluice = sys.argv[1], sys.argv[2]
    with open(os.path.join(root, "schemas", "sluice.schema.json")) as f:
        schema = yaml.safe_load(f)  # JSON is YAML; keeps one parser
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)

    failures = 0
    examples = sorted(glob.glob(os.path.join(root, "config", "*.yaml")))
    if not examples:
        print("no config/*.yaml found", file=sys.stderr)
        return 1

    env = dict(os.environ)
    for name in ("SLUICE_KAFKA", "SLUICE_MQTT_URL", "SLUICE_SPOOL"):
        env.pop(name, None)

    for path in examples:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        for e in errors:
            where = ".".join(str(p) for p in e.path) or "(root)"
            print(f"{path}: schema: {where}: {e.message}", file=sys.stderr)
            failures += 1
        if not errors:
            print(f"{os.path.basename(path)}: schema ok")

        if os.access(sluice, os.X_OK):
            r = subprocess.run([sluice, "check", "-c", path], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=60)
            if r.returncode != 0:
                print(f"{path}: sluice check exited {r.returncode}\n{r.stderr}{r.stdout}",
                      file=sys.stderr)
                failures += 1
            else:
                print(f"{os.path.basename(path)}: sluice check ok")
        else:
            print(f"{sluice}: not executable; skipping sluice check", file=sys.stderr)

    for snippet in BAD_SNIPPETS:
        if validator.is_valid(yaml.safe_load(snippet)):
            print(f"schema accepts a bad config: {snippet!r}", file=sys.stderr)
            failures += 1

    print(f"{len(examples)} example configs, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
