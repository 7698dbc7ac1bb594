#!/usr/bin/env bash
# Checks docs/observability: promtool validates and unit-tests the alert rules, and every
# metric the rules and the dashboard query must be one the library emits (the list in
# docs/observability/README.md, which a Rust test checks against the instruments).
# Installs promtool (Debian's prometheus package) when it is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OBS="$ROOT/docs/observability"
if ! command -v promtool >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  echo "check-observability: installing promtool (Debian package prometheus)" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
cd "$OBS"
promtool check rules alerts.yml
promtool test rules alerts.test.yml
python3 - <<'PY'
import json, re, sys
readme = open("README.md").read()
known = set(re.findall(r"`(leasing_[a-z_]+?)(?:_\{bucket,sum,count\})?`", readme))
hist = {k for k in known if "duration" in k}
allowed = known | {f"{h}_{s}" for h in hist for s in ("bucket", "sum", "count")}
used = set()
for path in ("alerts.yml", "dashboard.json"):
    used |= set(re.findall(r"\bleasing_[a-z_]+", open(path).read()))
json.load(open("dashboard.json"))
unknown = sorted(used - allowed)
if unknown:
    sys.exit(f"check-observability: unknown metrics queried: {unknown}")
print(f"check-observability: {len(used)} metric names queried, all emitted by the library")
PY
