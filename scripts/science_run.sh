#!/usr/bin/env bash
# The science run, resumable: run this script again to continue.
cd /work/main
extra=()
[ -d runs/gss-science/train ] && extra=(--resume)
echo "$(date) start ${extra[*]}" >> runs/gss-science.log
.venv/bin/cuma sweep --config configs/gss-science.yaml --grid 3e-4,1e-3 "${extra[@]}" >> runs/gss-science.log 2>&1
rc=$?
echo "$(date) exit rc=$rc" >> runs/gss-science.log
