#!/bin/sh
# Slurm job array: one task per shard of a sweep; the shard index is SLURM_ARRAY_TASK_ID.
#   sbatch --array=0-7 deploy/sweep-slurm.sh      # 8 shards: keep SHARDS in step
# then, when all tasks are done:
#   kinetic sweep merge --out results/sweep-1/merged results/sweep-1/shard-*
#SBATCH --job-name=kinetic-sweep
#SBATCH --cpus-per-task=4
#SBATCH --mem=1G
#SBATCH --time=01:00:00
#SBATCH --output=results/sweep-1/slurm-%a.log
set -eu
SHARDS=${SHARDS:-8}
DATA=${DATA:-data/klines}
exec kinetic sweep --space "${SPACE:-space.toml}" --data "$DATA" \
  --shard "${SLURM_ARRAY_TASK_ID}/${SHARDS}" --threads "${SLURM_CPUS_PER_TASK:-1}" \
  --no-progress --out "results/sweep-1/shard-${SLURM_ARRAY_TASK_ID}"
