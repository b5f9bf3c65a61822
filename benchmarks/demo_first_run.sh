#!/usr/bin/env bash
# The demo's first run with another job beside it: two fresh clones of REPO (default: this checkout);
# in one, the CI script (venv, installs, the whole test suite, the wheel smoke); 60 s later, in the
# other, the README Quickstart's first command with empty halo-opt/XDG caches; then a cached rerun.
# Logs and a load-average sample every 10 s go to OUT (default /tmp/demo-first-run).
#   bash benchmarks/demo_first_run.sh [REPO] [OUT]
set -u
REPO=$(cd "${1:-$(dirname "$0")/..}" && pwd); R=${2:-/tmp/demo-first-run}
rm -rf "$R"; mkdir -p "$R"
git clone -q "$REPO" "$R/ci" && git clone -q "$REPO" "$R/demo"
( cd "$R/ci" && CI=true bash .ci/run > "$R/ci.log" 2>&1; echo "rc=$?" >> "$R/ci.log" ) &
CIPID=$!
sleep 60
( while true; do echo "$(date -u +%T) $(cat /proc/loadavg)"; sleep 10; done ) > "$R/load.log" 2>&1 &
LPID=$!
cd "$R/demo"
export HALO_OPT_CACHE=$R/cache XDG_CACHE_HOME=$R/xdg
start=$(date +%s)
bash -c 'python3 -m venv .venv && . .venv/bin/activate && pip install -q torch==2.13.0 && pip install -q -e . && date -u +%T && /usr/bin/time -f "demo: %e s wall %U user %S sys" halo-opt demo' > "$R/demo.log" 2>&1
echo "whole command: $(( $(date +%s) - start )) s" >> "$R/demo.log"
. .venv/bin/activate && /usr/bin/time -f "cached rerun: %e s wall" halo-opt demo > "$R/rerun.log" 2>&1
kill $LPID
wait $CIPID
grep -E "demo:|whole command" "$R/demo.log"; grep "cached rerun" "$R/rerun.log"; cat runs/demo/state/stages.json; tail -3 "$R/ci.log"
