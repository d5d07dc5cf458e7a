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
# mutmut skips decorated functions; scripts/mutation_undecorate.py rewrites `@torch.no_grad()` and
# `@contextlib.contextmanager` in the scratch copy into plain rebinding so those are mutated too.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
SCRATCH=${SEGTUNE_MUTATION_DIR:-/tmp/segtune-mutation}
CHILDREN=${MUTMUT_CHILDREN:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one torch thread per mutmut worker: the workers are the parallelism
# A test that skips (no ../shared datasets, no PostgreSQL) would let every mutant it guards
# survive unnoticed: as in CI, a missing requirement fails the run instead (CI=false to allow it).
export CI=${CI:-true}

# module key | file to mutate | tests that guard it | mutants to run (fnmatch patterns; empty = all).
# Where a module holds helpers that decide no result (devices, timing, file copying), the run is
# limited to the functions that do, so a 2-core machine gets through it in minutes.
MODULES=(
  "metrics|core/metrics/segmentation.py|tests/test_metrics.py"
  "archives|core/data/archives.py|tests/test_datasets.py tests/test_ingest_edges.py"
  "splits|core/data/splits.py|tests/test_splits.py tests/test_classification_data.py tests/test_label_ingest.py"
  "budget|core/runtime/budget.py|tests/test_jobs.py tests/test_exact_budget.py"
  "loop|core/training/loop.py|tests/test_train.py|*.x_train_model__mutmut_* *.x__copy_state__mutmut_* *.x_evaluate_detailed__mutmut_* *from_params__mutmut_*"
  "objective|core/training/objective.py|tests/test_objective.py tests/test_rankings.py tests/test_study_engines.py|*.x__selection__mutmut_* *.x__epoch_reporter__mutmut_* *.x__objective_values__mutmut_* *.x__reuse_finished__mutmut_*"
  "scoring|core/training/scoring.py|tests/test_objective.py tests/test_rankings.py tests/test_classification_study.py tests/test_scoring.py"
  "export|core/deploy/export.py|tests/test_export.py|*.x__max_diff__mutmut_* *.x__verify__mutmut_* *.x__reference__mutmut_* *.x_export_onnx__mutmut_* *.x_export_torchscript__mutmut_* *.x_export_model__mutmut_*"
  "predict|core/deploy/predict.py|tests/test_predict.py"
)

wanted=("$@")
mkdir -p "$SCRATCH"
summary="$SCRATCH/summary.tsv"
[ -f "$summary" ] || printf 'module\tfile\tkilled\tsurvived\ttimeout\tno_tests\ttotal\n' > "$summary"

for entry in "${MODULES[@]}"; do
  IFS='|' read -r key file tests patterns <<< "$entry"
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " =~ " $key " ]]; then continue; fi
  work="$SCRATCH/$key"
  rm -rf "$work" && mkdir -p "$work/repo"
  # mutmut runs the tests from repo/mutants/, so they look for ../shared/datasets in repo/
  ln -s "$(cd "$REPO/.." && pwd)/shared" "$work/repo/shared"
  cp -r "$REPO/core" "$REPO/app" "$REPO/pages" "$REPO/tests" "$REPO/pytest.ini" "$work/repo/"  # some tests import app/
  "$PYTHON" scripts/mutation_undecorate.py "$work/repo/$file"  # mutmut skips decorated functions
  # Fastest tests first (durations from mutmut's stats run), so `-x` ends a killed mutant early.
  cat >> "$work/repo/tests/conftest.py" <<'ORDER'


def pytest_collection_modifyitems(items):  # added by scripts/mutation.sh to its scratch copy only
    import json
    from pathlib import Path

    stats = Path("mutmut-stats.json")
    durations = json.loads(stats.read_text()).get("duration_by_test", {}) if stats.is_file() else {}
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))
ORDER
  {
    echo "[mutmut]"
    echo "source_paths = core"
    echo "only_mutate = $file"
    # a mutant that deadlocks (a lock never released) sleeps: mutmut's CPU-time limit never fires
    echo "pytest_add_cli_args = -p no:cacheprovider -q -x --timeout=${MUTATION_TEST_TIMEOUT:-240}"
    echo "also_copy ="  # mutmut copies only the source paths and tests/ into mutants/; some tests import app/
    echo "    app"
    echo "    pages"
    echo "process_isolation = forkserver"  # forking the process that ran torch tests deadlocks its thread pools
    echo "pytest_add_cli_args_test_selection ="
    for t in $tests; do echo "    $t"; done
  } > "$work/repo/setup.cfg"
  echo "== $key: mutating $file against $tests"
  # shellcheck disable=SC2086  # the patterns are meant to split into arguments (quoted against globbing below)
  (cd "$work/repo" && set -f && nice -n "${NICE:-15}" "$PYTHON" -m mutmut run --max-children "$CHILDREN" $patterns > "$work/run.log" 2>&1) || echo "   mutmut exited $? (see $work/run.log)"
  (cd "$work/repo" && "$PYTHON" -m mutmut export-cicd-stats > /dev/null 2>&1) || true
  (cd "$work/repo" && "$PYTHON" -m mutmut results --all true > "$work/results.txt" 2>&1) || true
  "$PYTHON" - "$work/repo/mutants/mutmut-cicd-stats.json" "$key" "$file" >> "$summary" <<'PY'
import json, sys
stats = json.load(open(sys.argv[1]))
# mutmut's "total" also counts the mutants outside the patterns, which are not run: count the checked ones
stats["total"] = sum(stats.get(k, 0) for k in ("killed", "survived", "timeout", "no_tests", "suspicious", "segfault"))
print("\t".join([sys.argv[2], sys.argv[3]] + [str(stats.get(k, 0)) for k in ("killed", "survived", "timeout", "no_tests", "total")]))
PY
  tail -n 1 "$summary"
  grep -E ": (survived|no tests|timeout)" "$work/results.txt" | sed 's/^/   /' || true
done
