#!/usr/bin/env bash
# Corpus ablation of issue "Corpus v3" (results: benchmarks/results/corpus-v3/).
#
# Renders 3-hour corpora from the old recipe (five-soundfonts), from corpus-v3 and from
# corpus-v3 with one feature left out, fine-tunes the bundled cnn for the same 500 steps
# on each (benchmarks/experiments/cnn-corpus-ablation.toml, same seed, one thread), then
# scores every run on realdev, realdev-solo (with --errors counts), the synthetic test
# split of data/synth-v2 and the held-out piano test split of data/corpus-v3.
#
#   AMTCLI_SOUNDFONT_PATH=../shared/data/soundfonts:data/soundfonts bash benchmarks/corpus_ablation.sh
#
# Needs data/synth-v2 and data/corpus-v3 rendered first (docs/training.md). One run after
# another on one core: about 80 minutes on the 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
REALDEV=${REALDEV:-../shared/data/realdev}
OUT=benchmarks/results/corpus-v3
mkdir -p "$OUT" runs data
export OMP_NUM_THREADS=1

render() {  # name recipe
  [ -f "data/abl-$1/metadata.csv" ] || amtcli data synth "data/abl-$1" --recipe "$2" --seed 0 --hours 3 --jobs 1
}
train() {  # name [recipe]
  local recipe=${2:-benchmarks/experiments/cnn-corpus-ablation.toml}
  amtcli train --recipe "$recipe" --dataset "data/abl-${1%-harmonic}" --run-dir "runs/abl-$1"   # old-harmonic: data/abl-old
  python benchmarks/accuracy.py --model "runs/abl-$1/last" --realdev "$REALDEV" --realdev-solo "$REALDEV-solo" \
      --dataset data/synth-v2 --piano-test data/corpus-v3 --threads 1 --json "$OUT/abl-$1.json"
}

render old five-soundfonts
render v3 corpus-v3
for variant in no-samples no-timbre no-lines no-pedal; do
  render "$variant" "benchmarks/experiments/corpus-v3-$variant.toml"
done
for run in old v3 no-samples no-timbre no-lines no-pedal; do
  train "$run"
done
train v3-harmonic benchmarks/experiments/cnn-corpus-ablation-harmonic.toml
train old-harmonic benchmarks/experiments/cnn-corpus-ablation-harmonic.toml
python benchmarks/ablation_table.py "$OUT"/abl-*.json > "$OUT/ablation.md"
