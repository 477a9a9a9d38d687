#!/usr/bin/env bash
# The science run (configs/gss-science.yaml), resumable across sessions: run this script again to continue.
# Finished runs' predictions and per-question tables are copied to results/gss-science/ (kept in git, a few
# MB) every minute and restored from there before a start, so a new checkout reuses every finished run;
# training checkpoints stay in runs/gss-science/train (not kept: a run cut off mid-training starts again).
cd "$(dirname "$0")/.."
out=runs/gss-science
kept=results/gss-science
log=runs/gss-science.log
mkdir -p "$out" "$kept/predictions" "$kept/tables"
cp -ru "$kept/predictions" "$kept/tables" "$out/"
echo "$(date) start" >> "$log"
# --resume on a new output folder just starts; a lock left by a killed run is reported in the log.
.venv/bin/cuma compare --config configs/gss-science.yaml --resume >> "$log" 2>&1 &
pid=$!
keep() { cp -ru "$out/predictions" "$out/tables" "$kept/" 2>/dev/null; }
while kill -0 "$pid" 2>/dev/null; do keep; sleep 60; done
wait "$pid"
rc=$?
keep
cp -rf "$out/results.json" "$out/report.md" "$out/figures" "$kept/" 2>/dev/null
echo "$(date) exit rc=$rc" >> "$log"
