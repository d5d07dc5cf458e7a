#!/usr/bin/env bash
# Mutation testing (mutmut) over the modules that decide results, each against its own tests.
#
#   scripts/mutation.sh                 # every module below (slow: tens of minutes on 2 cores)
#   scripts/mutation.sh metrics splits  # only these
#
# Not part of scripts/test.sh. Each module runs in a scratch copy of the checkout
# ($SEGTUNE_MUTATION_DIR, default /tmp/segtune-mutation/<module>) with a generated setup.cfg, so
# no mutmut configuration lives in the repository and nothing here touches the working tree.
# Prints killed/survived counts per module and writes them to <scratch>/summary.tsv; survivors
# are listed (`mutmut show NAME` in that module's scratch folder shows the diff).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
SCRATCH=${SEGTUNE_MUTATION_DIR:-/tmp/segtune-mutation}
CHILDREN=${MUTMUT_CHILDREN:-2}

# module key | file to mutate | tests that guard it
MODULES=(
  "metrics|core/metrics/segmentation.py|tests/test_metrics.py"
  "archives|core/data/archives.py|tests/test_datasets.py"
  "splits|core/data/splits.py|tests/test_splits.py"
  "budget|core/runtime/budget.py|tests/test_jobs.py tests/test_exact_budget.py"
  "loop|core/training/loop.py|tests/test_train.py"
  "objective|core/training/objective.py|tests/test_objective.py"
  "export|core/deploy/export.py|tests/test_export.py"
  "predict|core/deploy/predict.py|tests/test_predict.py"
)

wanted=("$@")
mkdir -p "$SCRATCH"
summary="$SCRATCH/summary.tsv"
[ -f "$summary" ] || printf 'module\tfile\tkilled\tsurvived\ttimeout\tno_tests\ttotal\n' > "$summary"

for entry in "${MODULES[@]}"; do
  IFS='|' read -r key file tests <<< "$entry"
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " =~ " $key " ]]; then continue; fi
  work="$SCRATCH/$key"
  rm -rf "$work" && mkdir -p "$work/repo"
  ln -s "$(cd "$REPO/.." && pwd)/shared" "$work/shared"  # tests find ../shared/datasets as in a checkout
  cp -r "$REPO/core" "$REPO/tests" "$REPO/pytest.ini" "$work/repo/"
  {
    echo "[mutmut]"
    echo "source_paths = core"
    echo "only_mutate = $file"
    echo "pytest_add_cli_args = -p no:cacheprovider -q -x"
    echo "pytest_add_cli_args_test_selection ="
    for t in $tests; do echo "    $t"; done
  } > "$work/repo/setup.cfg"
  echo "== $key: mutating $file against $tests"
  (cd "$work/repo" && "$PYTHON" -m mutmut run --max-children "$CHILDREN" > "$work/run.log" 2>&1) || echo "   mutmut exited $? (see $work/run.log)"
  (cd "$work/repo" && "$PYTHON" -m mutmut export-cicd-stats > /dev/null 2>&1) || true
  (cd "$work/repo" && "$PYTHON" -m mutmut results --all true > "$work/results.txt" 2>&1) || true
  "$PYTHON" - "$work/repo/mutants/mutmut-cicd-stats.json" "$key" "$file" >> "$summary" <<'PY'
import json, sys
stats = json.load(open(sys.argv[1]))
print("\t".join([sys.argv[2], sys.argv[3]] + [str(stats.get(k, 0)) for k in ("killed", "survived", "timeout", "no_tests", "total")]))
PY
  tail -n 1 "$summary"
  grep -E ": (survived|no tests|timeout)" "$work/results.txt" | sed 's/^/   /' || true
done
