#!/usr/bin/env bash
# DFEW's 5-fold protocol (Jiang et al., ACM MM 2020), one model per fold: fold k's training set holds the test
# clips of the other folds, so each fold gets its own CoT data, its own SFT and its own evaluation.
#   bash recipes/qwen2_5_vl_3b/dfew_5fold.sh [DFEW_ROOT] [RUNS_DIR]
# then runs/eval/dfew/summary.md holds each fold's WAR/UAR and their mean ± std. Re-running skips what exists.
set -euo pipefail
DFEW=${1:-/data/DFEW}
RUNS=${2:-runs}
for k in 1 2 3 4 5; do
  [ -d "$RUNS/cot/dfew_fold$k/hf" ] || emoreason synth-cot --config data_pipelines/configs/dfew_openface.yaml \
      dataset_root="$DFEW" fold=$k split=train output_dir="$RUNS/cot/dfew_fold$k"
  [ -f "$RUNS/sft/dfew_fold$k/final/config.json" ] || accelerate launch \
      --config_file recipes/accelerate_configs/zero2.yaml -m emoreason sft --config recipes/qwen2_5_vl_3b/sft/dfew.yaml \
      dataset_name="$RUNS/cot/dfew_fold$k/hf" output_dir="$RUNS/sft/dfew_fold$k"
  emoreason eval --benchmark dfew --root "$DFEW" --model "$RUNS/sft/dfew_fold$k/final" --fold $k --out "$RUNS/eval/dfew"
done
cat "$RUNS/eval/dfew/summary.md"
