#!/usr/bin/env bash
# rnnkit quick start: the whole job on the sample data shipped with rnnkit, in about two minutes.
#
#   prepare -> train a trigram model and a small LSTM -> both perplexities side by side
#   -> generate sentences from each -> rescore candidate sentences and show the ranking
#
# for English and for Korean; then Korean -> English translation (one feature vector against
# attention, BLEU, the lecture's example) and captions of synthetic scenes. Every step is one `rnnkit` command, printed before it runs, so it
# can be copied. Usage: bash examples/quickstart.sh [WORKDIR]   (default: ./rnnkit-demo)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="${1:-rnnkit-demo}"
mkdir -p "$work"
command -v rnnkit >/dev/null || { echo "rnnkit is not on PATH: pip install . first" >&2; exit 2; }

run() {
    printf '\n\033[1;36m$ %s\033[0m\n' "$*" >&2  # stderr: a command's stdout may be redirected
    "$@"
}

start=$SECONDS
for lang in en ko; do
    d="$work/$lang"
    printf '\n\033[1m===== %s: the sample corpus shipped with rnnkit =====\033[0m\n' \
        "$([ "$lang" = en ] && echo English || echo Korean)"
    if [ "$lang" = en ]; then
        # 1. vocabulary and token ids, split 90/5/5 into train / valid / test
        run rnnkit prepare --sample en --out "$d/data"
        # 2. a trigram model (interpolated modified Kneser-Ney) and a small LSTM
        run rnnkit train "$d/data" --type ngram --order 3 --out "$d/tri.rnnkit"
        run rnnkit train "$d/data" --type lstm --emb 64 --hidden 64 --layers 1 --epochs 20 \
            --batch 10 --out "$d/lstm.rnnkit"
    else
        # Korean words carry their particles (바다를, 책은), so 600 sentences hold too few
        # repetitions of each word for an LSTM to learn from (word level: LSTM 56 against the
        # trigram's 38, and word-salad samples). Over characters (syllables) the text is dense:
        # the LSTM, with dropout, spells words right and beats the character trigram on the
        # stream it was trained on (its summary's valid perplexity) -- but scored sentence by
        # sentence from <s>, as tune-interp does, 600 sentences are still too few for it to win
        # alone; it adds to the trigram in the mixture.
        echo "Korean, character level: over words, 600 sentences are too sparse for an LSTM;"
        echo "over characters it wins on its training stream, and sentence by sentence it helps"
        echo "the trigram in the mixture but does not beat it alone (too little data)."
        run rnnkit prepare --sample ko --level char --out "$d/data"
        run rnnkit train "$d/data" --type ngram --order 3 --out "$d/tri.rnnkit"
        run rnnkit train "$d/data" --type lstm --emb 64 --hidden 128 --layers 1 --epochs 10 \
            --dropout 0.2 --batch 10 --out "$d/lstm.rnnkit"
    fi
    # 3. both perplexities side by side on held-out text, and the best interpolation of the two
    run rnnkit tune-interp "$d/tri.rnnkit" "$d/lstm.rnnkit" --data "$d/data"
    # 4. sentences sampled from each model
    run rnnkit generate "$d/tri.rnnkit" --num 3 --seed 1
    run rnnkit generate "$d/lstm.rnnkit" --num 3 --seed 1
    # 5. a recogniser's candidate sentences, re-ranked by both models together (the winner: ★)
    run rnnkit rescore "$d/tri.rnnkit" "$d/lstm.rnnkit" "$here/quickstart/$lang.nbest"
done

# ----- translation: the Korean-English sample (the lecture's 8.5.2) -----
d="$work/ko-en"
printf '\n\033[1m===== translation: Korean -> English, one feature vector vs attention =====\033[0m\n'
# 1. sentence pairs, split 90/5/5; the held-out test pairs as text, to translate and score
run rnnkit prepare --sample ko-en --parallel --out "$d/data"
run python3 -c "from rnnkit.text.parallel import ParallelCorpus as P; import sys
pairs = P.load(sys.argv[1]).text('test')
open(sys.argv[2], 'w').write(''.join(k + '\n' for k, _ in pairs))
open(sys.argv[3], 'w').write(''.join(e + '\n' for _, e in pairs))" "$d/data" "$d/test.ko" "$d/test.en"
# 2. the two designs: the decoder starts from one feature vector, or also attends to every
#    encoder state
for att in none general; do
    run rnnkit train "$d/data" --type seq2seq --attention "$att" --emb 64 --hidden 128 \
        --layers 1 --batch 32 --epochs 10 --lr 0.003 --out "$d/$att.rnnkit"
    run rnnkit translate "$d/$att.rnnkit" "$d/test.ko" --beam 5 > "$d/$att.hyp.en"
    run rnnkit evaluate "$d/$att.hyp.en" "$d/test.en"
done
# 3. the lecture's example sentence, and what the attention model sees while translating it
printf '자세히 보아야 예쁘다\n오래 보아야 사랑스럽다\n' > "$d/lecture.ko"
run rnnkit translate "$d/general.rnnkit" "$d/lecture.ko" --beam 5

# ----- image captioning on synthetic scenes (needs Pillow: pip install 'rnnkit[images]') -----
if python3 -c 'import PIL' 2>/dev/null; then
    d="$work/scenes"
    printf '\n\033[1m===== captioning: synthetic scenes, the demo feature extractor =====\033[0m\n'
    # 1. images of simple scenes with several captions each; held-out scenes from another seed
    run rnnkit synth --scenes 800 --out "$d/train"
    run rnnkit synth --scenes 8 --seed 1 --out "$d/test"
    # 2. frozen features (the demo extractor), then the projection, embeddings and LSTM trained
    run rnnkit features "$d/train/images" --out "$d/train.safetensors"
    run rnnkit train "$d/train" --type caption --features "$d/train.safetensors" --emb 64 \
        --hidden 96 --layers 1 --epochs 12 --lr 0.005 --batch 32 --out "$d/caption.rnnkit"
    # 3. a caption per held-out image, its first reference beside it, and BLEU against all
    run rnnkit caption "$d/caption.rnnkit" "$d/test/images" --beam 3 \
        --references "$d/test/captions.tsv" > "$d/captions.tsv"
    while IFS=$'\t' read -r id cap; do
        printf '%s\n  rnnkit:    %s\n  reference: %s\n' "$id" "$cap" \
            "$(grep -m1 "^$id"$'\t' "$d/test/captions.tsv" | cut -f2)"
    done < "$d/captions.tsv"
else
    printf '\n(captioning skipped: Pillow is not installed; pip install "rnnkit[images]")\n'
fi
printf '\n\033[1mdone in %d s\033[0m: models and data are in %s/\n' "$((SECONDS - start))" "$work"
