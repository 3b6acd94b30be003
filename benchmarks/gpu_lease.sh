#!/usr/bin/env bash
# One short lease of a GPU machine: float32 accuracy against float64 (gpu_precision.py), the ensemble-cost
# benchmark, the float64 physics tests on the GPU and the MD-speed benchmark, each under its own time
# limit, everything written to $OUT.
#
# The GPU machine runs its own image's python3 (its jax, flax, optax, orbax); what that image lacks
# travels with the working tree, prepared on this machine (Python 3.12 wheels):
#   .gpu_site/  e3x (without its 94 MB Wigner-D table, which physnetjax never loads), ase, vesin,
#               more_itertools, importlib_resources, installed with `pip install --target`;
#   .gpu_data/  a copy of ../shared/data (the benchmarks' data; ../shared does not travel).
# Both are ignored (.gitignore) and named in the call's `carry`. Prepared with:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl e3x==1.0.2 ase==3.29.0 vesin==0.6.2 more_itertools importlib_resources
#   pip install --no-deps --no-compile --target .gpu_site .whl/*.whl && rm .gpu_site/e3x/so3/_wigner_d_lut.npz
#   cp -r ../shared/data .gpu_data
#
# Usage (on the GPU machine, repository root): OUT=DIR [STAGES='gpu_precision tests'] bash benchmarks/gpu_lease.sh
# (stage limits in seconds: PRECISION_S, ENSEMBLE_S, TESTS_S, MD_S).
set -u
OUT=${OUT:-benchmarks/results/gpu}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/.gpu_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PHYSNETJAX_BENCH_DATA="$PWD/.gpu_data"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several test workers share the one GPU
export PYTHONUNBUFFERED=1

stage() {  # name, seconds, command...: run with a limit, log to $OUT/name.log, report its exit status
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local status=$?
    echo "== $name: exit $status after $((SECONDS - start)) s (limit $limit s)" | tee -a "$OUT/summary.txt"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/summary.txt"
$PY - <<'EOF' 2>&1 | tee -a "$OUT/summary.txt"
import importlib.metadata as md
import jax
print("jax devices:", jax.devices())
print(" ".join(f"{n}={md.version(n)}" for n in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
                                              "e3x", "ase", "vesin")))
EOF

for name in ${STAGES:-gpu_precision bench_ensemble tests bench_md}; do
    case $name in
    gpu_precision)
        stage gpu_precision "${PRECISION_S:-90}" $PY benchmarks/gpu_precision.py --out "$OUT"
        grep -A 4 "^Float32" "$OUT/gpu_precision.log" ;;
    bench_ensemble)
        stage bench_ensemble "${ENSEMBLE_S:-150}" $PY benchmarks/bench_ensemble.py --quick --out "$OUT"
        grep -A 14 "^Ensemble" "$OUT/bench_ensemble.log" ;;
    tests)  # the test suite's own XLA options (tests/conftest.py) included
        stage tests "${TESTS_S:-100}" $PY -m pytest -p no:cacheprovider -n 4 -q -rfE --durations=5 \
            tests/test_matmul_precision.py tests/test_physics.py tests/test_goldens.py tests/test_ensemble.py
        tail -n 8 "$OUT/tests.log" ;;
    bench_md)
        stage bench_md "${MD_S:-100}" $PY benchmarks/bench_md.py --quick --out "$OUT"
        grep -A 6 "^JAX-native" "$OUT/bench_md.log" ;;
    *) echo "unknown stage $name" ;;
    esac
done
cat "$OUT/summary.txt"
