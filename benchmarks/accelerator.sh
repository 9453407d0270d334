#!/usr/bin/env bash
# flowclass on an accelerator, in one bounded run (about 9.5 minutes; every part under `timeout`):
#
#   1. environment: python, what imports (jax/flax/optax/torch/orbax/tqdm/pytest/...), jax.devices(),
#      the default backend, torch.cuda.is_available(), nvidia-smi -L;
#   2. flowclass installed without dependencies and without the network
#      (pip --no-deps --no-build-isolation --no-index; PYTHONPATH=$PWD if that fails);
#   3. the test suite's device subset (pytest -m "not slow", the files in TEST_FILES below);
#   4. the benchmark's main rows on the device: flowclass vs the PyTorch twins
#      (benchmarks/run.py --device gpu: both on the GPU; the MNIST flows at batch 128 and 1024);
#   5. the default MNIST flow (experiments/mnist/configs/accelerator.py) from a carried mnist.pkl.gz:
#      minutes to 99.0 % and 99.4 % validation accuracy;
#   6. a summary: $OUT/summary.md (printed) and per-part logs and JSON under $OUT.
#
#   bash benchmarks/accelerator.sh                        # the full run, on a machine with a GPU
#   ACCELERATOR_SMOKE=1 bash benchmarks/accelerator.sh    # every part shrunk: a rehearsal on a CPU (~5 min)
#
# Nothing is downloaded: JAX, Flax, optax, NumPy, scikit-learn (and PyTorch for the benchmark's twins)
# must be installed; the MNIST part needs .ci-cache/mnist/mnist.pkl.gz (or IDX files) carried along.
# A missing tqdm or orbax-checkpoint is replaced by an import-only stand-in so that flowclass imports
# (without orbax the MNIST part is skipped: a run checkpoints); a missing pytest, chex or scipy skips
# the tests that need it; a missing torch leaves the benchmark's flowclass rows only.
#
# Environment (all optional):
#   OUT                        output folder (default ./accelerator-out)
#   ACCELERATOR_WORK           write the logs here instead, and into OUT only summary.md and
#                              accelerator-out.tar.gz (everything but checkpoints): for a tool that
#                              brings back only a few files from OUT
#   PYTHON                     interpreter (default python3)
#   ACCELERATOR_SMOKE=1        tiny sizes everywhere (a CPU rehearsal)
#   ACCELERATOR_TOTAL_S        the whole run's budget in seconds (default 570; smoke 480)
#   ACCELERATOR_TESTS_S        cap of the test part (default 120; smoke 90)
#   ACCELERATOR_TEST_FILES     the test files instead of the script's list; ACCELERATOR_TEST_K: pytest -k
#   ACCELERATOR_BENCH_S        cap of the benchmark part (default 165; smoke 150); no new row after cap - 50 s
#   ACCELERATOR_MNIST_MIN_S    seconds kept for the MNIST part whatever the others take (default 210; smoke 150)
#   ACCELERATOR_MNIST_BUDGET_S most training seconds of the MNIST run (default 240; smoke 45)
#   ACCELERATOR_MNIST_OVERHEAD_S  its seconds outside training: start, data, compilation, test scoring
#                              (default 80; smoke 100); the training budget is what is left less this
#   ACCELERATOR_MNIST_EPOCHS   auto (default: what the benchmark's measured speed fits in the budget,
#                              27 to 80) or a number
#   ACCELERATOR_MNIST_DIR      where mnist.pkl.gz is (default $FLOWCLASS_TEST_MNIST_DIR, else .ci-cache/mnist)
#   ACCELERATOR_MNIST_OVERRIDES  extra section.field=value overrides of the MNIST config
#   ACCELERATOR_BENCH_ARGS     extra arguments of benchmarks/run.py (e.g. "--models mnist_fast_flow")
#   ACCELERATOR_SKIP           parts to leave out, comma-separated: install,tests,bench,mnist
#                              (install: flowclass is imported from this checkout through PYTHONPATH)
#   ACCELERATOR_HIDE           modules to make unimportable, comma-separated (a rehearsal of a machine
#                              without them, e.g. tqdm,orbax,pytest,chex)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)
OUT=${OUT:-$ROOT/accelerator-out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
FINAL=$OUT
if [ -n "${ACCELERATOR_WORK:-}" ]; then
  mkdir -p "$ACCELERATOR_WORK" && OUT=$(cd "$ACCELERATOR_WORK" && pwd)
fi
PY=${PYTHON:-$(command -v python3 || command -v python)}
SMOKE=${ACCELERATOR_SMOKE:-0}
REPORT="$ROOT/benchmarks/accelerator_report.py"
SKIP=",${ACCELERATOR_SKIP:-},"
if [ "$SMOKE" = 1 ]; then
  TOTAL_S=${ACCELERATOR_TOTAL_S:-480}; TESTS_S=${ACCELERATOR_TESTS_S:-90}; BENCH_S=${ACCELERATOR_BENCH_S:-150}
  MNIST_MIN_S=${ACCELERATOR_MNIST_MIN_S:-150}; MNIST_BUDGET_S=${ACCELERATOR_MNIST_BUDGET_S:-45}
  MNIST_OVERHEAD_S=${ACCELERATOR_MNIST_OVERHEAD_S:-100}
  # tiny but real: the library's layers, nets, metrics and parameter averaging
  TEST_FILES="tests/test_masks.py tests/test_nets.py tests/test_metrics.py tests/test_averaging.py"
  BENCH_MODE=(--quick --no-scaling --models moons_flow,fnn,cnn --host-devices 1)
  MNIST_SMOKE=(data.train_subset=6000 data.val_size=1000 data.test_subset=1000 train.eval_batch_size=500)
  MNIST_EPOCHS=${ACCELERATOR_MNIST_EPOCHS:-2}
else
  TOTAL_S=${ACCELERATOR_TOTAL_S:-570}; TESTS_S=${ACCELERATOR_TESTS_S:-120}; BENCH_S=${ACCELERATOR_BENCH_S:-165}
  MNIST_MIN_S=${ACCELERATOR_MNIST_MIN_S:-210}; MNIST_BUDGET_S=${ACCELERATOR_MNIST_BUDGET_S:-240}
  MNIST_OVERHEAD_S=${ACCELERATOR_MNIST_OVERHEAD_S:-80}
  # What runs on the device, most important first (a time cap stops pytest with SIGINT: what ran is
  # still reported). Left out: test_sharding.py (virtual CPU devices via XLA_FLAGS, JAX_PLATFORMS=cpu),
  # test_runtime.py (XLA CPU flags, tcmalloc re-exec), test_x64.py (its subprocess forces
  # JAX_PLATFORMS=cpu), test_benchmarks.py (CPU timing; the GPU benchmark is part 4),
  # test_experiment_*.py and test_runs.py (end-to-end runs and fresh-process reloads, minutes each;
  # part 5 is the device's end-to-end run), test_checkpoint_kills.py, test_hostile_files.py,
  # test_image_data.py, test_bad_inputs.py, test_validation.py, test_architecture.py, test_moons.py,
  # test_sklearn.py (host-side parsing, validation, kills, data and estimator checks: nothing for a device).
  TEST_FILES="tests/test_bijectors.py tests/test_distributions.py tests/test_classifier.py
    tests/test_image_models.py tests/test_training.py tests/test_attacks.py tests/test_precision.py
    tests/test_metrics.py tests/test_nets.py tests/test_masks.py tests/test_optim.py tests/test_averaging.py
    tests/test_generation.py tests/test_nan_training.py tests/test_semi_supervised.py tests/test_invariance.py
    tests/test_robustness.py tests/test_extreme_values.py"
  BENCH_MODE=(--no-scaling --models mnist_fast_flow,cnn,moons_flow,fnn,mnist_multiscale_flow --min-seconds 0.5)
  MNIST_SMOKE=()
  MNIST_EPOCHS=${ACCELERATOR_MNIST_EPOCHS:-auto}
fi
TEST_FILES=${ACCELERATOR_TEST_FILES:-$TEST_FILES}
TEST_K=${ACCELERATOR_TEST_K:-}
MNIST_DIR=${ACCELERATOR_MNIST_DIR:-${FLOWCLASS_TEST_MNIST_DIR:-$ROOT/.ci-cache/mnist}}
: > "$OUT/parts.tsv"

left() { echo $(( TOTAL_S - ($(date +%s) - START) )); }
# seconds a part may take: its cap, less what the parts after it are guaranteed
allowance() {
  local cap=$1 keep=$2 rest
  rest=$(( $(left) - keep ))
  [ "$rest" -lt "$cap" ] && cap=$rest
  [ "$cap" -lt 0 ] && cap=0
  echo "$cap"
}
record() {  # part status seconds result
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$OUT/parts.tsv"
  echo "== $1: $2 (${3} s) $4"
}
skipped() { case "$SKIP" in *",$1,"*) return 0 ;; esac; return 1; }
KEEP_FOR_MNIST=$(( MNIST_MIN_S + 10 ))
skipped mnist && KEEP_FOR_MNIST=10

echo "== flowclass on an accelerator: $(date -u '+%Y-%m-%d %H:%M UTC'); budget ${TOTAL_S} s; out $OUT;" \
     "$([ "$SMOKE" = 1 ] && echo 'SMOKE (tiny sizes)' || echo 'full run')"

# ---------------------------------------------------------------- 1. environment
t0=$(date +%s)
prepend_path() { export PYTHONPATH="$1${PYTHONPATH:+:$PYTHONPATH}"; }
if [ -n "${ACCELERATOR_HIDE:-}" ]; then
  mkdir -p "$OUT/hidden"
  "$PY" "$REPORT" hide "$OUT/hidden" ${ACCELERATOR_HIDE//,/ }
  prepend_path "$OUT/hidden"
  echo "rehearsal: hiding ${ACCELERATOR_HIDE}"
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # parts 1-3 share the device with nothing, but need little of it
{ command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi -L && timeout 20 nvidia-smi \
    --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; } > "$OUT/nvidia-smi.txt" 2>&1 \
  || echo "nvidia-smi: not available" >> "$OUT/nvidia-smi.txt"
cat "$OUT/nvidia-smi.txt"
timeout -k 5 "$(allowance 60 $((KEEP_FOR_MNIST + 60)))" "$PY" "$REPORT" env "$OUT/env.json" 2>&1 | tee "$OUT/env.log"
env_rc=${PIPESTATUS[0]}
field() { "$PY" -c "import json,sys; d=json.load(open('$OUT/env.json')); v=d.get('$1'); print(v if v is not None else '')" 2>/dev/null; }
missing() { "$PY" -c "import json; print(' '.join(json.load(open('$OUT/env.json'))['missing']))" 2>/dev/null; }
BACKEND=$(field jax_backend); MISSING=" $(missing) "; TORCH_CUDA=$(field torch_cuda_available)
if [ "$env_rc" = 0 ]; then
  absent=$(echo $MISSING | sed 's/ /, /g')
  record environment ok $(( $(date +%s) - t0 )) \
    "jax backend ${BACKEND} ($(field jax_device_kind)), torch CUDA ${TORCH_CUDA:-n/a}; missing: ${absent:-nothing}"
else
  record environment FAILED $(( $(date +%s) - t0 )) "JAX does not compute here (exit $env_rc): see env.log"
fi
has() { case "$MISSING" in *" $1 "*) return 1 ;; esac; return 0; }
# stand-ins so that flowclass imports without tqdm / orbax-checkpoint (both imported at its top level)
STAND_INS=""
for module in tqdm orbax.checkpoint; do has "$module" || STAND_INS="$STAND_INS $module"; done
if [ -n "$STAND_INS" ]; then
  mkdir -p "$OUT/stand-ins"
  "$PY" "$REPORT" stand-ins "$OUT/stand-ins" $STAND_INS
  prepend_path "$OUT/stand-ins"
  echo "import-only stand-ins for:$STAND_INS"
fi

# ---------------------------------------------------------------- 2. install
t0=$(date +%s)
check_import() { (cd "$OUT" && timeout 60 "$PY" -c "import flowclass; print(flowclass.__version__, flowclass.__file__)"); }
[ -e build ] && had_build=1 || had_build=0  # pip builds in the tree: remove what it leaves, not what was there
if skipped install; then
  how="PYTHONPATH (ACCELERATOR_SKIP=install)"
  prepend_path "$ROOT"
  : > "$OUT/install.log"
elif timeout -k 5 "$(allowance 90 $((KEEP_FOR_MNIST + 60)))" "$PY" -m pip install --no-deps --no-build-isolation \
     --no-index --no-cache-dir --disable-pip-version-check "$ROOT" > "$OUT/install.log" 2>&1; then
  how="pip install --no-deps"
else
  how="PYTHONPATH (pip install failed: $(grep -m1 -iE 'error' "$OUT/install.log" | cut -c1-120))"
  prepend_path "$ROOT"
fi
[ "$had_build" = 0 ] && rm -rf build
if imported=$(check_import 2>>"$OUT/install.log"); then
  record install ok $(( $(date +%s) - t0 )) "flowclass $imported via $how"
  FLOWCLASS=1
else
  prepend_path "$ROOT"
  if imported=$(check_import 2>>"$OUT/install.log"); then
    record install ok $(( $(date +%s) - t0 )) "flowclass $imported via PYTHONPATH (the installed copy did not import)"
    FLOWCLASS=1
  else
    record install FAILED $(( $(date +%s) - t0 )) "import flowclass fails: $(tail -1 "$OUT/install.log" | cut -c1-160)"
    FLOWCLASS=0
  fi
fi

# ---------------------------------------------------------------- 3. tests on the device
t0=$(date +%s)
if skipped tests; then
  record tests skipped 0 "ACCELERATOR_SKIP"
elif [ "$FLOWCLASS" = 0 ] || ! has pytest; then
  record tests skipped 0 "$([ "$FLOWCLASS" = 0 ] && echo 'flowclass does not import' || echo 'pytest is not installed')"
else
  files="" ignored=""
  for f in $TEST_FILES; do
    need=""
    case "$f" in
      */test_bijectors.py) has chex || need="chex" ;;
      */test_classifier.py|*/test_distributions.py) { has chex && has scipy; } || need="chex/scipy" ;;
      */test_metrics.py) has sklearn || need="sklearn" ;;
    esac
    if [ -n "$need" ]; then ignored="$ignored ${f#tests/}($need)"; else files="$files $f"; fi
  done
  k_args=()
  deselect="$TEST_K"
  if ! has orbax.checkpoint; then deselect="${deselect:+$deselect and }not checkpoint and not resume"; fi
  [ -n "$deselect" ] && k_args=(-k "$deselect")
  cap=$(allowance "$TESTS_S" $((KEEP_FOR_MNIST + 60)))
  # SIGINT at the cap: pytest stops, reports what ran and writes the JUnit file
  timeout -s INT -k 20 "$cap" "$PY" -m pytest -p no:cacheprovider -rfE -m "not slow" "${k_args[@]}" \
    --junitxml="$OUT/tests.xml" $files > "$OUT/tests.log" 2>&1
  rc=$?
  counts=$("$PY" - "$OUT/tests.xml" "$OUT/tests.log" <<'PY'
import re, sys, xml.etree.ElementTree as ET
xml, log = sys.argv[1:]
text = open(log, errors="replace").read()
try:
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    collected = re.search(r"collected (\d+) items?(?: / (\d+) deselected)?", text)
    total = int(collected.group(1)) - int(collected.group(2) or 0) if collected else n["tests"]
    left = total - n["tests"]
    print(f"{passed} passed, {n['failures']} failed, {n['errors']} errors, {n['skipped']} skipped"
          + (f", {left} not run (time cap)" if left > 0 else "") + f" in {float(suite.get('time', 0)):.0f} s")
except Exception as error:
    print(f"no JUnit report ({type(error).__name__}); log tail: " + " | ".join(text.strip().splitlines()[-2:])[:200])
PY
)
  status=ok
  [ "$rc" = 124 ] || [ "$rc" = 130 ] || [ "$rc" = 2 ] && status="time cap"
  [ "$rc" = 1 ] && status="FAILURES"
  [ "$rc" -gt 2 ] && [ "$rc" != 124 ] && [ "$rc" != 130 ] && status="ERROR (exit $rc)"
  record tests "$status" $(( $(date +%s) - t0 )) "$counts${ignored:+; not collected, missing modules:$ignored}"
  # failures on a GPU: rerun them with full float32 matmuls, to tell TF32 (JAX's GPU default) from bugs
  failed=$(grep -E '^FAILED ' "$OUT/tests.log" | sed -E 's/^FAILED ([^ ]+).*/\1/' | head -40)
  if [ -n "$failed" ] && [ "$BACKEND" != cpu ]; then
    t1=$(date +%s)
    cap=$(allowance 45 $((KEEP_FOR_MNIST + 60)))
    set -f  # node ids hold brackets: no globbing
    JAX_DEFAULT_MATMUL_PRECISION=highest timeout -s INT -k 10 "$cap" "$PY" -m pytest -p no:cacheprovider -q -rfE \
      $failed > "$OUT/tests-rerun-highest.log" 2>&1
    set +f
    record "tests: failures rerun at matmul precision 'highest'" done $(( $(date +%s) - t1 )) \
      "$(tail -1 "$OUT/tests-rerun-highest.log" | tr -d '=' | sed 's/^ *//' | cut -c1-160)"
  fi
fi

# ---------------------------------------------------------------- 4. benchmark: flowclass vs PyTorch
t0=$(date +%s)
case "$BACKEND" in gpu) DEVICE=gpu ;; *) DEVICE=cpu ;; esac
if skipped bench; then
  record benchmark skipped 0 "ACCELERATOR_SKIP"
elif [ "$FLOWCLASS" = 0 ]; then
  record benchmark skipped 0 "flowclass does not import"
elif [ "$BACKEND" = tpu ]; then
  record benchmark skipped 0 "run.py measures a CPU or a GPU (PyTorch has no TPU twin here); see docs/tutorials/colab_tpu.ipynb"
else
  frameworks=jax,torch note=""
  if ! has torch; then frameworks=jax; note="; torch not installed: flowclass rows only"
  elif [ "$DEVICE" = gpu ] && [ "$TORCH_CUDA" != True ]; then frameworks=jax; note="; torch sees no CUDA device: flowclass rows only"; fi
  cap=$(allowance "$BENCH_S" "$KEEP_FOR_MNIST")
  limit=$(( cap > 90 ? cap - 50 : cap * 2 / 3 ))  # no new row after this: the last one has time to finish
  # JAX's default device memory handling in the measuring processes (one at a time)
  env -u XLA_PYTHON_CLIENT_PREALLOCATE timeout -k 10 "$cap" "$PY" benchmarks/run.py --device "$DEVICE" --frameworks "$frameworks" \
    --time-limit "$limit" --out "$OUT/bench" "${BENCH_MODE[@]}" ${ACCELERATOR_BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
  rc=$?
  if [ -f "$OUT/bench/results.json" ]; then
    rows=$("$PY" -c "
import json; d = json.load(open('$OUT/bench/results.json'))
ok = [r for r in d['rows'] if 'error' not in r]
print(f\"{len(ok)} rows measured, {len(d['rows']) - len(ok)} failed, {len(d.get('skipped', []))} not started (time limit)\")")
    record benchmark "$([ "$rc" = 0 ] && echo ok || echo "exit $rc")" $(( $(date +%s) - t0 )) "--device $DEVICE: $rows$note"
  else
    record benchmark FAILED $(( $(date +%s) - t0 )) "exit $rc, no results: $(grep -v '^\s*$' "$OUT/bench.log" | tail -1 | cut -c1-160)"
  fi
fi

# ---------------------------------------------------------------- 5. MNIST: minutes to 99.0 / 99.4 %
t0=$(date +%s)
if skipped mnist; then
  record mnist skipped 0 "ACCELERATOR_SKIP"
elif [ "$FLOWCLASS" = 0 ]; then
  record mnist skipped 0 "flowclass does not import"
elif ! has orbax.checkpoint; then
  record mnist skipped 0 "orbax-checkpoint is not installed (a run checkpoints after its epochs)"
elif [ ! -f "$MNIST_DIR/mnist.pkl.gz" ] && [ ! -f "$MNIST_DIR/train-images-idx3-ubyte.gz" ] \
     && [ ! -f "$MNIST_DIR/train-images-idx3-ubyte" ]; then
  record mnist skipped 0 "no mnist.pkl.gz or IDX files in $MNIST_DIR (carry .ci-cache/mnist/mnist.pkl.gz)"
else
  cap=$(allowance 100000 10)
  budget=$(( cap - MNIST_OVERHEAD_S ))
  [ "$budget" -gt "$MNIST_BUDGET_S" ] && budget=$MNIST_BUDGET_S
  if [ "$budget" -lt 20 ]; then
    record mnist skipped 0 "only ${cap} s left, less than ${MNIST_OVERHEAD_S} s of overhead + 20 s of training"
  else
    epochs=$MNIST_EPOCHS
    if [ "$epochs" = auto ]; then
      epochs=$("$PY" "$REPORT" mnist-epochs "$OUT/bench/results.json" "$budget" 2>"$OUT/mnist-epochs.log")
      cat "$OUT/mnist-epochs.log"
    fi
    rm -rf "$OUT/mnist/run"
    mkdir -p "$OUT/mnist"
    echo "MNIST: $cap s for the part, training budget $budget s, $epochs epochs"
    # JAX's default device memory handling: nothing else runs now
    env -u XLA_PYTHON_CLIENT_PREALLOCATE timeout -k 10 "$cap" "$PY" -m experiments.mnist.main --config accelerator \
      --workdir "$OUT/mnist/run" --data-dir "$MNIST_DIR" --quiet --no-figures \
      "train.time_budget_s=$budget" "train.epochs=$epochs" "${MNIST_SMOKE[@]}" ${ACCELERATOR_MNIST_OVERRIDES:-} \
      > "$OUT/mnist.log" 2>&1
    rc=$?
    times=$("$PY" "$REPORT" mnist-times "$OUT/mnist/run" "$OUT/mnist/time_to_accuracy.json" 2>&1 | tail -1)
    record mnist "$([ "$rc" = 0 ] && echo ok || echo "exit $rc")" $(( $(date +%s) - t0 )) \
      "budget ${budget} s, ${epochs} epochs scheduled: ${times}"
  fi
fi

# ---------------------------------------------------------------- 6. summary
echo
record total "" $(( $(date +%s) - START )) "of ${TOTAL_S} s"
"$PY" "$REPORT" summary "$OUT" || cat "$OUT/parts.tsv"
if [ "$FINAL" != "$OUT" ]; then
  cp "$OUT/summary.md" "$FINAL/" 2>/dev/null
  tar czf "$FINAL/accelerator-out.tar.gz" -C "$OUT" --exclude=checkpoints --exclude=stand-ins --exclude=hidden . \
    && echo "logs and results: $FINAL/accelerator-out.tar.gz"
fi
