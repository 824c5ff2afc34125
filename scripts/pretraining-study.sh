#!/usr/bin/env bash
# The experiments of docs/pretraining.md, in order, each step skipped when its output exists.
# Reads ../shared/data (the pretraining corpus is built from its training splits); writes
# runs/pretrain/. About 3 hours on 2 idle cores. Run from the repository root:
#
#   bash scripts/pretraining-study.sh            # everything
#   STEPS="bert textcnn" bash scripts/pretraining-study.sh
#
# Steps: corpus params bert textcnn albert ner. MINUTES sets the pretraining budget (30), LRS the
# fine-tuning learning rates both SST-2 arms are tried at (each arm is scored at its best).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
BIN=${BIN:-.venv/bin}
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/pretrain}
MINUTES=${MINUTES:-30}
LRS=${LRS:-1e-4,3e-4,1e-3}
STEPS=${STEPS:-corpus params bert textcnn albert ner}
mkdir -p "$OUT"
say() { echo "== $(date +%H:%M:%S) $*"; }
want() { [[ " $STEPS " == *" $1 "* ]]; }

if want corpus && [ ! -f "$OUT/corpus/train.txt" ]; then
  say "corpus from the training splits of $DATA"
  "$BIN/python" -m model.pretrain.corpus --data-dir "$DATA" --out "$OUT/corpus"
fi

if want params; then
  say "parameter counts of the presets"
  "$BIN/python" -m model.pretrain.study params > "$OUT/params.jsonl"
fi

# MLM from scratch (WordPiece vocabulary trained on the corpus), then SST-2 pretrained vs random.
# The vocabulary of the first run is reused by the others, so every backbone reads the same pieces.
pretrain_and_study() {  # arch
  local arch=$1 ckpt="$OUT/$1-small" tok=()
  if [ "$arch" != bert ]; then tok=(--tokenizer "$OUT/bert-small"); fi
  if [ ! -f "$ckpt/berth_pretrain.json" ]; then
    say "pretrain $arch small for $MINUTES minutes"
    "$BIN/berth" train mlm --arch "$arch" --size small --train "$OUT/corpus/train.txt" \
      --dev "$OUT/corpus/dev.txt" --out "$ckpt" "${tok[@]}" --epochs 40 --max-minutes "$MINUTES" \
      --lr "${LR:-5e-4}" --batch-size 64
  fi
  if [ ! -f "$OUT/study/$arch-small/study.json" ]; then
    say "SST-2: $arch pretrained vs random initialisation, seeds 1,2,3, learning rates $LRS"
    "$BIN/python" -m model.pretrain.study sst2 --pretrained "$ckpt" --seeds 1,2,3 --lrs "$LRS" \
      --train data/sst/train.txt --dev data/sst/dev.txt --out "$OUT/study/$arch-small"
  fi
}
if want bert; then pretrain_and_study bert; fi
if want textcnn; then pretrain_and_study textcnn; fi

if want albert; then
  if [ ! -f "$OUT/albert-small/berth_pretrain.json" ]; then
    say "pretrain albert small for $((MINUTES / 2)) minutes"
    "$BIN/berth" train mlm --arch albert --size small --train "$OUT/corpus/train.txt" \
      --dev "$OUT/corpus/dev.txt" --out "$OUT/albert-small" --tokenizer "$OUT/bert-small" \
      --epochs 40 --max-minutes "$((MINUTES / 2))" --batch-size 64
  fi
  if [ ! -f "$OUT/albert-sst2/berth_train.json" ]; then
    say "fine-tune the ALBERT on SST-2"
    "$BIN/berth" train classify --base "$OUT/albert-small" --train data/sst/train.txt \
      --dev data/sst/dev.txt --out "$OUT/albert-sst2" --epochs 3 --lr 1e-4 --max-length 64
  fi
  if [ ! -f "$OUT/bundles/albert-sst2/berth.json" ]; then
    say "export the ALBERT classifier as a bundle"
    "$BIN/berth" export --checkpoint "$OUT/albert-sst2" --task classify --name albert-sst2 \
      --out "$OUT/bundles" --overwrite
  fi
fi

# Typo robustness on CoNLL-2003: the default NER recipe (export/defaults.py) and the same recipe
# with typo augmentation, both scored clean and under the attack on the dev set.
if want ner; then
  if [ ! -f runs/ner/berth_train.json ]; then
    say "default NER model (make models)"
    "$BIN/berth" models --only ner
  fi
  [ -f "$OUT/ner-default.attack.json" ] || { say "attack the default NER model";
    "$BIN/berth" eval ner --checkpoint runs/ner --data data/conll2003/dev.txt --attack typos \
      > "$OUT/ner-default.attack.json"; }
  if [ ! -f "$OUT/ner-typos/berth_train.json" ]; then
    say "NER with --augment ${AUGMENT:=typos=0.5,keep-clean}"
    "$BIN/berth" train ner --train data/conll2003/train.txt --dev data/conll2003/dev.txt \
      --out "$OUT/ner-typos" --format conll --epochs 2 --batch-size 32 --lr 1e-4 --max-length 256 \
      --label-pieces all --augment "$AUGMENT"
  fi
  [ -f "$OUT/ner-typos.attack.json" ] || { say "attack the augmented NER model";
    "$BIN/berth" eval ner --checkpoint "$OUT/ner-typos" --data data/conll2003/dev.txt --attack typos \
      > "$OUT/ner-typos.attack.json"; }
fi
say "done"
