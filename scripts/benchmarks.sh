#!/usr/bin/env bash
# Reproduce the figures in docs/benchmarks.md (CPU by default; pass --device cuda on a GPU).
# Timings from different machines or runs are not comparable: compare rows of one run as ratios.
set -euo pipefail
OUT=${OUT:-bench-results}
mkdir -p "$OUT"
EXTRA=("$@")
# default image model: maskers (self-guided at every feature source) and a plain eager MAE
maskkit bench --modality image --model micro --batch-size 64 --steps 8 --warmup 3 \
  --masker random --masker block --masker noise-green --masker self-guided \
  --masker self-guided:feature_layer=0 --masker self-guided:feature_layer=last \
  --masker self-guided:feature_source=embeddings --masker random --reference --json "$OUT/image_micro.jsonl" "${EXTRA[@]}"
# ViT-B/16 at 224^2, 75 % masking: self-guided with early / middle / last feature layers
maskkit bench --modality image --model base --image-size 224 --patch-size 16 --batch-size 4 --steps 3 --warmup 1 \
  --masker random --masker self-guided:feature_layer=2 --masker self-guided:feature_layer=5 \
  --masker self-guided:feature_layer=11 --masker random --reference --json "$OUT/image_base.jsonl" "${EXTRA[@]}"
# every modality with its default model and data shape
for m in video audio pointcloud; do
  maskkit bench --modality "$m" --batch-size 32 --steps 5 --warmup 2 --masker random --masker self-guided \
    --json "$OUT/$m.jsonl" "${EXTRA[@]}"
done
