#!/usr/bin/env bash
# The main job on the embedded default: write the synthetic benchmark and print its statistics.
set -euo pipefail
out=${1:-runs/quickstart}
e2h data synth --out "$out/data" --train-per-level 200 --test-per-level 50 --seed 0
e2h data stats "$out/data/train.jsonl" --tokenizer char
