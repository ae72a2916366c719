#!/usr/bin/env bash
# A new user's path, checked end to end: a fresh venv, the wheel, its offline weights, and the
# default experiment (seed 0) run from an unrelated folder with an empty model cache.
#   bash experiments/check_fresh_install.sh [WORK_DIR]     (default /tmp/bayes_w2s_fresh)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-/tmp/bayes_w2s_fresh}"
rm -rf "$WORK" && mkdir -p "$WORK/elsewhere"
t0=$(date +%s)
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q --upgrade pip build
(cd "$ROOT" && "$WORK/venv/bin/python" -m build -q --wheel --outdir "$WORK/dist" . > /dev/null)
"$WORK/venv/bin/pip" install -q "torch==2.13.0"
"$WORK/venv/bin/pip" install -q "$WORK"/dist/*.whl
cd "$WORK/elsewhere"
"$WORK/venv/bin/pip" install -q --no-deps $("$WORK/venv/bin/bayes-w2s" models --requirements)
echo "install: $(( $(date +%s) - t0 )) s"
cp "$ROOT/experiments/configs/sst2.yaml" my.yaml
export HF_HUB_OFFLINE=1 BAYES_W2S_CACHE="$WORK/cache" BAYES_W2S_DATA="${BAYES_W2S_DATA:-$ROOT/../shared/data}"
"$WORK/venv/bin/bayes-w2s" models | grep "offline: installed"
t1=$(date +%s)
"$WORK/venv/bin/bayes-w2s" run my.yaml --seeds 0 --output "$WORK/elsewhere/out" -q
echo "run (seed 0, empty cache): $(( $(date +%s) - t1 )) s; results in $WORK/elsewhere/out"
