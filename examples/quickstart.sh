#!/usr/bin/env bash
# rnnkit quick start: the whole job on the sample corpora shipped with rnnkit, in under a minute.
#
#   prepare -> train a trigram model and a small LSTM -> both perplexities side by side
#   -> generate sentences from each -> rescore candidate sentences and show the ranking
#
# for English and for Korean. Every step is one `rnnkit` command, printed before it runs, so it
# can be copied. Usage: bash examples/quickstart.sh [WORKDIR]   (default: ./rnnkit-demo)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="${1:-rnnkit-demo}"
mkdir -p "$work"
command -v rnnkit >/dev/null || { echo "rnnkit is not on PATH: pip install . first" >&2; exit 2; }

run() {
    printf '\n\033[1;36m$ %s\033[0m\n' "$*"
    "$@"
}

start=$SECONDS
for lang in en ko; do
    d="$work/$lang"
    printf '\n\033[1m===== %s: the sample corpus shipped with rnnkit =====\033[0m\n' \
        "$([ "$lang" = en ] && echo English || echo Korean)"
    # 1. vocabulary and token ids, split 90/5/5 into train / valid / test
    run rnnkit prepare --sample "$lang" --out "$d/data"
    # 2. a trigram model (interpolated modified Kneser-Ney) and a small LSTM
    run rnnkit train "$d/data" --type ngram --order 3 --out "$d/tri.rnnkit"
    run rnnkit train "$d/data" --type lstm --emb 64 --hidden 64 --layers 1 --epochs 20 \
        --batch 10 --out "$d/lstm.rnnkit"
    # 3. both perplexities side by side on held-out text, and the best interpolation of the two
    run rnnkit tune-interp "$d/tri.rnnkit" "$d/lstm.rnnkit" --data "$d/data"
    # 4. sentences sampled from each model
    run rnnkit generate "$d/tri.rnnkit" --num 3 --seed 1
    run rnnkit generate "$d/lstm.rnnkit" --num 3 --seed 1
    # 5. a recogniser's candidate sentences, re-ranked by both models together (the winner: ★)
    run rnnkit rescore "$d/tri.rnnkit" "$d/lstm.rnnkit" "$here/quickstart/$lang.nbest"
done
printf '\n\033[1mdone in %d s\033[0m: models and data are in %s/\n' "$((SECONDS - start))" "$work"
