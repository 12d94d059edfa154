#!/bin/bash
# Classify PLATE as SHARDS array tasks, then merge them into OUT/merged once every task has ended.
#   submit-plate.sh PLATE MODEL OUT SHARDS [sbatch options for both jobs, e.g. --partition=cpu]
# Prints the two job ids. afterany, not afterok: a shard with failed fields exits 1, and the merge
# reports shards that are missing or were interrupted (its exit code says so).
set -euo pipefail
plate=$1 model=$2 out=$3 shards=$4
shift 4
here=$(dirname "$(readlink -f "$0")")
mkdir -p "$out"
array=$(sbatch --parsable "$@" --array="0-$((shards - 1))" --output="$out/slurm-%A_%a.out" \
    "$here/classify-array.sbatch" "$plate" "$model" "$out")
merge=$(sbatch --parsable "$@" --dependency="afterany:$array" --job-name=mcnn-merge \
    --output="$out/slurm-merge-%j.out" --wrap "mcnn-appliance merge '$out'/shard-* --out '$out/merged'")
echo "$array $merge"
