#!/usr/bin/env bash
# Documentation and static checks, run inside CI's already-activated virtual environment:
#
#   bash .ci/docs.sh
#
# 1. installs the `dev` extra (docs tools, ruff, mypy);
# 2. ruff check on flowclass/, docs/, tests/, experiments/ and benchmarks/; ruff format --check
#    on docs/ (the rest has not been formatted with ruff: checking it would reformat it all);
# 3. mypy on flowclass/ (configured in pyproject.toml);
# 4. the docstring examples: python -m pytest --doctest-modules flowclass (on every core, pytest-xdist,
#    with flowclass.runtime.use_quick_compile()'s flags);
# 5. the tutorial notebooks are stored without outputs;
# 6. the Sphinx build with warnings as errors, executing every notebook (MNIST reads
#    $FLOWCLASS_TEST_MNIST_DIR/mnist.pkl.gz if set, else Debian's Fashion-MNIST);
# 7. every public name is in the API reference, documented with an example and type-annotated.
#
# Every step runs even if an earlier one failed; the script exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
failed=()

run() {  # run NAME COMMAND...: runs one step, records a failure
  local name=$1
  shift
  echo
  echo "=== ${name} (at $(($(date +%s) - start)) s)"
  if ! "$@"; then
    failed+=("${name}")
    echo "=== FAILED: ${name}"
  fi
}

sphinx_build() {
  local log=docs/_build/sphinx.log
  rm -rf docs/_build/html docs/_build/doctrees docs/_build/jupyter_execute
  mkdir -p docs/_build
  # -j auto: the notebooks execute in parallel (MyST-NB is parallel-read safe): 146 s instead of 186 s here
  FLOWCLASS_DOCS_EXECUTE=force python -m sphinx -E -W --keep-going -j auto -b html -d docs/_build/doctrees \
    docs docs/_build/html >"${log}" 2>&1
  local status=$?
  grep -E "Executed notebook|WARNING|ERROR|build (succeeded|finished)" "${log}" | grep -v IPKernelApp |
    sed 's|^.*/docs/|docs/|'
  if [ "${status}" -ne 0 ]; then
    echo "--- last 60 lines of ${log}:"
    tail -n 60 "${log}"
  fi
  local slow
  slow=$(grep -oE "[^ ]+: Executed notebook in [0-9.]+ seconds" "${log}" | awk '$(NF-1) > 60 {print $1}')
  [ -z "${slow}" ] || echo "note: notebooks over a minute here: ${slow} (keep tutorials small)"
  return "${status}"
}

run "install the dev extra" python -m pip install --quiet -e '.[dev]'
run "ruff check" ruff check flowclass docs tests experiments benchmarks
run "ruff format --check (docs/)" ruff format --check docs
run "mypy" mypy
# The doctests compile many small programs, so XLA compiles them quickly
# (flowclass.runtime.QUICK_COMPILE_FLAGS); the notebooks train for longer and gained nothing from
# it, so the Sphinx build keeps XLA's defaults. Measurements: docs/notes/speed.md, "Compile time".
quick_xla_flags=$(python -c 'import os, flowclass.runtime as r; r.use_quick_compile(); print(os.environ["XLA_FLAGS"])')
run "doctests" env XLA_FLAGS="${quick_xla_flags}" \
  python -m pytest -q -p no:cacheprovider --doctest-modules flowclass -n auto
run "notebooks stored without outputs" python docs/_tools/check.py notebooks
run "sphinx build (warnings are errors, notebooks executed)" sphinx_build
if [ -f docs/_build/html/objects.inv ]; then
  run "public API documented, annotated, with examples" python docs/_tools/check.py api docs/_build/html/objects.inv
else
  failed+=("public API check (no objects.inv: the build did not get that far)")
fi

echo
echo "docs and checks finished in $(($(date +%s) - start)) s; HTML in docs/_build/html/index.html"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "all passed"
