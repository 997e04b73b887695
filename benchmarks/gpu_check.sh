#!/usr/bin/env bash
# Device check of mseloss's Triton backend on a bare CUDA machine (written for one H200).
#
#   bash benchmarks/gpu_check.sh          # from anywhere; OUT=./gpu_out by default
#
# 1. finds torch and triton (or installs the wheels of a .whl/ folder into /tmp/site, offline);
# 2. runs tests/test_triton.py on CUDA tensors (compiled, not interpreted), with src/ on the path
#    (no install; numba is not needed: without it only the CPU backend is unavailable);
# 3. runs benchmarks/gpu_bench.py: the 2**31 + 17 element bfloat16 check, then forward,
#    forward+backward and 'none' for float32 and bfloat16 at N = 2**20, 2**24, 2**26, 2**28
#    against eager PyTorch and torch.compile. Results: $OUT/gpu_bench.csv, logs: $OUT/*.log.
#
# Everything is bounded so that the script ends within 8 minutes; the exit status is non-zero
# when a step failed (every step runs regardless). GPU_CHECK_SMOKE=1 runs the same steps on the
# CPU through Triton's interpreter (tiny sizes), to try the script on a machine without a GPU.
set -euo pipefail
export PYTHONUNBUFFERED=1

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export OUT
PY="${PYTHON:-python3}"
START=$SECONDS
DEADLINE_S=470  # stop everything before 8 minutes

log() { echo "[gpu_check +$((SECONDS - START))s] $*"; }
remaining() { echo $((DEADLINE_S - (SECONDS - START))); }

# --- 1. Python environment ----------------------------------------------------------------------
have() { "$PY" -c "import $1" >/dev/null 2>&1; }
install_wheels() {  # install_wheels PATTERN...: the matching wheels of .whl/, offline
    local wheels=()
    for pattern in "$@"; do
        for wheel in .whl/$pattern; do [[ -f "$wheel" ]] && wheels+=("$wheel"); done
    done
    if ((${#wheels[@]})); then
        log "installing ${#wheels[@]} wheel(s) from .whl/ into /tmp/site"
        "$PY" -m pip install -q --no-index --no-deps --target /tmp/site "${wheels[@]}"
        export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
}
if ! have torch || ! have triton; then
    install_wheels '*.whl'
elif ! have pytest; then
    install_wheels 'pytest-*.whl' 'pluggy-*.whl' 'iniconfig-*.whl' 'packaging-*.whl'
fi
if ! have torch || ! have triton; then
    log "FAILED: torch and triton are not importable (and no usable .whl/ folder)"
    exit 2
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET MSELOSS_BACKEND
BENCH_ARGS=(--out "$OUT" --compile-budget-s 120)
if [[ "${GPU_CHECK_SMOKE:-0}" == 1 ]]; then
    log "smoke mode: CPU tensors through Triton's interpreter"
    export TRITON_INTERPRET=1
    BENCH_ARGS+=(--smoke --compile-budget-s 10)
fi

"$PY" - <<'EOF' 2>&1 | tee "$OUT/environment.log"
import importlib.util, os, sys
import torch, triton
print("python", sys.version.split()[0], "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| triton", triton.__version__)
if torch.cuda.is_available():
    free, total = torch.cuda.mem_get_info()
    gib = 2**30
    print("device", torch.cuda.get_device_name(), f"| {free / gib:.0f}/{total / gib:.0f} GiB free")
elif os.environ.get("TRITON_INTERPRET") != "1":
    sys.exit("no CUDA device visible")
for name in ("numba", "numpy", "pytest"):
    print(name, "present" if importlib.util.find_spec(name) else "MISSING")
import mseloss
print("mseloss", mseloss.__version__, "from", mseloss.__file__)
EOF

status=0

# --- 2. Tests ------------------------------------------------------------------------------------
if have pytest; then
    log "pytest tests/test_triton.py"
    set +e
    timeout 240 "$PY" -m pytest tests/test_triton.py -q -rs -p no:cacheprovider --durations=5 \
        --junitxml="$OUT/pytest.xml" 2>&1 | tee "$OUT/pytest.log"
    rc=${PIPESTATUS[0]}
    set -e
    log "pytest exit status $rc"
    ((rc == 0)) || status=1
else
    log "SKIPPED tests: pytest is not installed (gpu_bench.py still cross-checks the losses)"
    status=1
fi

# --- 3. Benchmark and the 2**31 + 17 element check -------------------------------------------
budget=$(remaining)
if ((budget < 60)); then
    log "FAILED: no time left for the benchmark"
    exit 1
fi
log "benchmarks/gpu_bench.py (limit ${budget}s)"
set +e
timeout "$budget" "$PY" benchmarks/gpu_bench.py "${BENCH_ARGS[@]}" 2>&1 \
    | tee "$OUT/gpu_bench.log"
rc=${PIPESTATUS[0]}
set -e
log "gpu_bench.py exit status $rc"
((rc == 0)) || status=1

log "done, status $status; files in $OUT:"
ls -l "$OUT"
exit "$status"
