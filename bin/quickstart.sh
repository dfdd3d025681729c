#!/usr/bin/env bash
# The main job on the embedded default: Easy-to-Hard SFT of a tiny model on the synthetic benchmark
# (levels 1-3), greedy accuracy on levels 1-5, then 8 samples per problem and their accuracy by level.
# About 10 minutes on 2 CPU cores. Outputs under runs/tiny/ (TensorBoard: tensorboard --logdir runs/tiny).
set -euo pipefail
e2h fit --config configs/tiny/sft.yaml "$@"
e2h test --config configs/tiny/eval.yaml
rm -f runs/tiny/samples.jsonl  # a fresh model: do not resume samples of an earlier run
e2h predict --config configs/tiny/sample.yaml
e2h data samples runs/tiny/samples.jsonl
