#!/usr/bin/env bash
# A runtime-upgrade A/B, end to end: two environments, one sweep, one verdict.
#   examples/runtime-upgrade/run.sh        (from anywhere; uses the repository's .venv)
# Makes envs/onnxruntime-1.24 and envs/onnxruntime-1.32 beside this script (torch pinned, this aigcbench
# installed editable, the runtime from each requirements file), runs sweep.toml into ab.db here, then
# compares the two sides cell by cell. compare exits 1 if the upgrade regressed a cell.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
make -C "$repo" setup
for side in onnxruntime-1.24 onnxruntime-1.32; do
  make -C "$repo" "env-$side" AIGCBENCH_ENVS="$here/envs" ENV_SPECS="$here"
done
aigcbench="$repo/.venv/bin/aigcbench"
"$aigcbench" sweep "$here/sweep.toml" --store "$here/ab.db" || [ $? -eq 1 ]
"$aigcbench" compare --store "$here/ab.db" --base runtime=onnxruntime-1.24 --new runtime=onnxruntime-1.32 \
  --markdown "$here/compare.md"
