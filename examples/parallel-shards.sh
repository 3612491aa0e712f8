#!/usr/bin/env bash
# One stress campaign as N shards on one machine with GNU parallel, then merged.
# Each shard is its own process (its own piscina pool of --jobs threads); the shards
# are disjoint and together run every seed once, so this is the same campaign as
#   mmsim stress $SCENARIOS --seeds $SEEDS
# only spread over processes (or, with `parallel --sshlogin`, over machines).
#
#   examples/parallel-shards.sh                      # defaults below
#   SHARDS=8 SEEDS=10000 SCENARIOS="munmap-vs-access switch-mm-munmap" examples/parallel-shards.sh
#   RUN_FLAGS="--cpus 4 --ops 3000 --threads 2 --delay 0.05 --knob munmap.free_before_flush" examples/parallel-shards.sh
#
# Exit: as the campaign (0 every seed clean, 1 a seed failed, 2 bad input or a shard that did not finish).
set -uo pipefail
cd "$(dirname "$0")/.."

SHARDS=${SHARDS:-4}
SEEDS=${SEEDS:-1000}
SCENARIOS=${SCENARIOS:-munmap-vs-access}
RUN_FLAGS=${RUN_FLAGS:-}
OUT=${OUT:-out/campaign}
JOBS_PER_SHARD=${JOBS_PER_SHARD:-1}

command -v parallel >/dev/null || { echo "parallel-shards.sh: GNU parallel is not installed (apt-get install parallel)" >&2; exit 2; }
mkdir -p "$OUT"
rm -f "$OUT"/shard-*.jsonl

# a shard exits 1 when one of its seeds failed: that is a result, not a broken shard
# (--halt never: every shard runs to its end; --joblog keeps each shard's exit code)
# shellcheck disable=SC2086
parallel --halt never --joblog "$OUT/joblog" --line-buffer --tagstring 'shard {}' \
  node bin/mmsim.js stress $SCENARIOS --seeds "$SEEDS" --jobs "$JOBS_PER_SHARD" $RUN_FLAGS \
    --shard '{}/'"$SHARDS" --out "$OUT/shard-{}.jsonl" --repro-dir "$OUT/repros" --no-progress \
  ::: $(seq 0 $((SHARDS - 1)))

# exit codes 2 (bad input) or 3+ (crashed): the campaign is incomplete
if awk 'NR > 1 && ($7 > 1 || $8 != 0) { bad = 1 } END { exit !bad }' "$OUT/joblog"; then
  echo "parallel-shards.sh: a shard did not finish (see $OUT/joblog)" >&2
  exit 2
fi

# shellcheck disable=SC2086
exec node bin/mmsim.js stress merge "$OUT"/shard-*.jsonl --seeds "$SEEDS" --out "$OUT/merged.jsonl"
