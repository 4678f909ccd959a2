"""Training recurrent models: streams and evaluation worked by hand, learning on the English
sample and the long-dependency synthetic corpus, determinism, exact resume (in process and after
a real Ctrl-C), divergence, patience, --init-from, metrics and the train command's errors."""
import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from rnnkit import modelfile
from rnnkit.cli import main
from rnnkit.errors import TrainingError
from rnnkit.models.protocol import LanguageModel
from rnnkit.models.rnnlm import RNNLM, Architecture, RecurrentState, load
from rnnkit.text import synth
from rnnkit.text.prepare import build_corpus
from rnnkit.text.vocab import BOS, EOS, SPECIALS, Vocab
from rnnkit.training.checkpoint import checkpoint_path, metrics_path, read_checkpoint
from rnnkit.training.lm_task import batchify, evaluate, lm_stream
from rnnkit.training import TrainEvents, TrainingInterrupted, TrainOptions, train

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "rug", "big"]
TINY = dict(emb=8, hidden=8, layers=2, bptt=6, batch=4, epochs=3, threads=1)


def cli(capsys, *args):
    capsys.readouterr()
    code = main([str(a) for a in args])
    o = capsys.readouterr()
    return code, o.out, o.err


def toy_lines(n, seed=0, words=WORDS):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, rng.integers(2, 8))) for _ in range(n)]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    (d / "text.txt").write_text("\n".join(toy_lines(240)) + "\n")
    corpus = build_corpus([str(d / "text.txt")], split="0.8,0.1,0.1")
    corpus.write(d / "data")
    return corpus, d


def tensors(path):
    return modelfile.read(path)[0]


def assert_same_weights(a, b):
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert ta[k].tobytes() == tb[k].tobytes(), k  # bit for bit


# --- streams and evaluation ----------------------------------------------------------------------
def test_lm_stream_and_batchify_by_hand():
    ids = np.array([5, 6, EOS, 7, EOS, 8, 9, 10, EOS], np.uint32)
    x, y = lm_stream(ids)
    # samples x = (<s>, z1 .. zT), y = (z1 .. zT, </s>), laid end to end
    assert x.tolist() == [BOS, 5, 6, BOS, 7, BOS, 8, 9, 10]
    assert y.tolist() == ids.tolist() and x.dtype == np.int64
    b = batchify(np.arange(10), 3)  # three streams of 3, the 10th token left out
    assert b.tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]] and b.flags.c_contiguous


def test_evaluate_counts_every_token_whatever_the_batch():
    vocab = Vocab(list(SPECIALS) + WORDS)
    model = RNNLM(Architecture("lstm", len(vocab), 6, 5, 2), vocab)
    model.init_uniform(np.random.default_rng(0), 0.5)
    rng = np.random.default_rng(1)
    ids = rng.integers(3, len(vocab), 53).astype(np.uint32)
    ids[[4, 11, 30, 52]] = EOS
    # by hand through the protocol's single steps: one stream, state carried throughout
    x, y = lm_stream(ids)
    state = RecurrentState(model.arch, 1)
    want = 0.0
    for xt, yt in zip(x, y):
        model.advance(state, np.array([xt]))
        want -= float(model.log_probs(state)[0, yt]) * math.log(10)
    for window in (1, 7, 60):
        assert evaluate(model, ids, batch=1, window=window) == (pytest.approx(want, rel=1e-6), 53)
    # B streams, each from the zero state: stream b by hand, plus the left-over tokens
    for batch in (4, 10):
        nats, count = evaluate(model, ids, batch=batch, window=7)
        S = 53 // batch
        by_hand = 0.0
        for b in range(batch):
            state = RecurrentState(model.arch, 1)
            for t in range(b * S, (b + 1) * S + (53 - S * batch if b == batch - 1 else 0)):
                model.advance(state, np.array([x[t]]))
                by_hand -= float(model.log_probs(state)[0, y[t]]) * math.log(10)
        assert count == 53 and nats == pytest.approx(by_hand, rel=1e-6)


# --- learning ------------------------------------------------------------------------------------
def unigram_perplexity(corpus, split="valid"):
    """Add-one unigram model of the training split (with </s>), the baseline to beat."""
    V = len(corpus.vocab)
    counts = np.bincount(np.asarray(corpus["train"]), minlength=V).astype(float)
    p = (counts + 1) / (counts.sum() + V)
    return math.exp(-np.log(p[np.asarray(corpus[split])]).mean())


def test_small_lstm_on_the_english_sample_beats_a_unigram_model(tmp_path):
    corpus = build_corpus(None, sample="en")
    unigram = unigram_perplexity(corpus)
    s = train(corpus, tmp_path / "en.rnnkit", emb=32, hidden=32, layers=1, epochs=4, bptt=20,
              batch=8, decay_after=3, threads=1)
    assert s["valid_perplexity"] < 0.3 * unigram, (s["valid_perplexity"], unigram)
    assert s["test_perplexity"] < 0.3 * unigram_perplexity(corpus, "test")
    # the perplexity training reports is the one of the saved model through the LM protocol,
    # up to the state carried across sentences while training
    model = load(tmp_path / "en.rnnkit")
    assert model.perplexity(corpus.text("valid")) < 0.4 * unigram


def test_adaptive_softmax_model_trains_through_the_cli(tmp_path, capsys):
    """--output adaptive on the English sample (293 ids): it learns as the full softmax does,
    --json names the output layer, and the file loads with its cutoffs. --div-value 2: at
    --hidden 32 the default 4 would leave the last cluster a projection of 2 units."""
    corpus = build_corpus(None, sample="en")
    corpus.write(tmp_path / "en")
    out = tmp_path / "ad.rnnkit"
    code, stdout, err = cli(capsys, "train", tmp_path / "en", "--type", "lstm", "--output",
                            "adaptive", "--cutoffs", "40,120", "--div-value", 2, "--emb", 32,
                            "--hidden", 32,
                            "--layers", 1, "--epochs", 4, "--bptt", 20, "--batch", 8,
                            "--decay-after", 3, "--threads", 1, "--out", out, "--json")
    assert code == 0, err
    s = json.loads(stdout)
    assert s["output"] == "adaptive 40,120"
    assert s["valid_perplexity"] < 0.3 * unigram_perplexity(corpus), s["valid_perplexity"]
    model = load(out)
    assert model.arch.output == "adaptive" and model.arch.cutoffs == (40, 120)
    assert model.arch.head_bias and model.p["decoder.head.bias"].shape == (42,)   # the default
    assert np.abs(model.p["decoder.head.bias"]).max() > 0.1   # trained, not left at its init
    assert model.perplexity(corpus.text("valid")) < 0.4 * unigram_perplexity(corpus)


def test_no_head_bias_and_options_saved_before_the_field(toy, tmp_path, capsys):
    """--no-head-bias gives PyTorch's default head (no decoder.head.bias); options saved before
    head_bias existed (a checkpoint's, a model's) mean no head bias, so such runs resume."""
    _, d = toy
    out = tmp_path / "m.rnnkit"
    code, _, err = cli(capsys, "train", d / "data", "--output", "adaptive", "--cutoffs", "4",
                       "--emb", 8, "--hidden", 8, "--layers", 1, "--epochs", 1, "--bptt", 5,
                       "--batch", 2, "--no-head-bias", "--threads", 1, "--out", out)
    assert code == 0, err
    model = load(out)
    assert not model.arch.head_bias and "decoder.head.bias" not in model.p
    old = TrainOptions(output="adaptive", cutoffs=(4,)).to_dict()
    del old["head_bias"]
    assert TrainOptions.from_dict(old).head_bias is False
    assert TrainOptions.from_dict(TrainOptions().to_dict()).head_bias is True


@pytest.mark.parametrize("args,msg", [
    (["--output", "adaptive"], "--output adaptive needs --cutoffs"),
    (["--output", "adaptive", "--cutoffs", "2000,10000"], "between 1 and the vocabulary size"),
    (["--output", "adaptive", "--cutoffs", "4,x"], "expected comma-separated integers"),
    (["--cutoffs", "4"], "--cutoffs applies to --output adaptive only"),
    (["--output", "hsm", "--cutoffs", "4"], "unknown --output 'hsm'"),
])
def test_adaptive_options_errors(toy, tmp_path, capsys, args, msg):
    _, d = toy
    code, _, err = cli(capsys, "train", d / "data", *args, "--out", tmp_path / "m.rnnkit")
    assert code == 2 and err.startswith("error:") and msg in err, err


def final_word_accuracy(model: LanguageModel, sentences) -> float:
    """How often the most probable answer word, given the sentence up to it, is the right one
    (the argmax over the answer words a00 .. aK: which answer, not whether one comes now)."""
    answers = np.array([i for i, t in enumerate(model.vocab.tokens)
                        if t[0] == "a" and t[1:].isdigit()])
    by_length = {}
    for s in sentences:
        by_length.setdefault(len(s), []).append(s)
    right = 0
    for n, group in by_length.items():
        a = np.array(group, np.int64)
        state = model.start(len(a))
        for t in range(n - 1):
            state = model.advance(state, a[:, t])
        pred = answers[model.log_probs(state)[:, answers].argmax(1)]
        right += int((pred == a[:, -1]).sum())
    return right / len(sentences)


def test_lstm_carries_the_key_across_20_filler_words_and_a_5gram_cannot(tmp_path):
    """The lecture's long-dependency point as a test: `k_i w_1 .. w_L a_i` with L in [20, 24].

    Small enough to run in ~4 s. The LSTM learns the task when it discovers the key, after a
    plateau whose length depends on the seed and on float rounding (training is chaotic there):
    with this schedule, 8 of 13 runs (seeds 1-8 with the row-sparse gradient norm, 1-5 with the
    dense one) reached 95%; the others found the key late and ran out of learning rate. This
    seed finds it by epoch 12 with both norms and reaches 100%, so the test does not hang on the
    last bit of a sum
    (bench/bench_synth.py reports several seeds and the RNN / no-forget-gate LSTM)."""
    from rnnkit.models.ngram import estimate as ngram

    synth.write(tmp_path / "synth.txt", sentences=5000, filler_min=20, filler_max=24, keys=5,
                filler_vocab=20, seed=1)
    corpus = build_corpus([str(tmp_path / "synth.txt")], split="0.8,0.1,0.1")
    test = corpus.sentences("test")
    assert min(len(s) for s in test) >= 22
    train(corpus, tmp_path / "lstm.rnnkit", emb=16, hidden=32, layers=1, bptt=50, batch=8,
          epochs=50, lr=0.5, lr_decay=0.8, decay_after=30, seed=3, threads=1)
    lstm = load(tmp_path / "lstm.rnnkit")
    assert final_word_accuracy(lstm, test) >= 0.95
    five = ngram.train(corpus, order=5, discount_fallback=True)
    assert abs(final_word_accuracy(five, test) - 1 / 5) < 0.08  # chance: 1 in 5 keys


def test_one_process_clips_and_steps_the_embedding_rows_a_window_read(toy, tmp_path,
                                                                         monkeypatch):
    """The loop passes the model's row-sparse description to clipping and the optimizer: every
    window names the rows of its input ids, and tied weights fall back to the dense passes."""
    from rnnkit.training import loop

    corpus, _ = toy
    seen, original = [], loop.clip_grad_norm

    def clip(grads, max_norm, rows=()):
        seen.append(rows)
        return original(grads, max_norm, rows)

    monkeypatch.setattr(loop, "clip_grad_norm", clip)
    train(corpus, tmp_path / "a.rnnkit", **dict(TINY, epochs=1))
    assert seen and all(len(r) == 1 and 0 < len(r[0].rows) <= 6 * 4 for r in seen)
    assert all(r[0].count == len(corpus.vocab) and r[0].width == 8 for r in seen)
    seen.clear()
    train(corpus, tmp_path / "b.rnnkit", **dict(TINY, epochs=1, tie_weights=True))
    assert seen and all(r == () for r in seen)


# --- determinism and resume ----------------------------------------------------------------------
def test_same_seed_same_weights_bit_for_bit(toy, tmp_path):
    corpus, _ = toy
    opts = dict(TINY, dropout=0.3, epochs=2)
    train(corpus, tmp_path / "a.rnnkit", **opts)
    train(corpus, tmp_path / "b.rnnkit", **opts)
    assert_same_weights(tmp_path / "a.rnnkit", tmp_path / "b.rnnkit")
    train(corpus, tmp_path / "c.rnnkit", **dict(opts, seed=1))
    assert tensors(tmp_path / "a.rnnkit")["rnn.weight_hh_l0"].tobytes() != \
        tensors(tmp_path / "c.rnnkit")["rnn.weight_hh_l0"].tobytes()


class StopAfter(TrainEvents):
    """Asks the loop to stop (as Ctrl-C does) after `n` more windows."""

    def __init__(self, n):
        self.n = n
        self.checkpoints = []

    def window(self, done, windows, tokens, loss):
        self.n -= 1

    def should_stop(self):
        return self.n <= 0

    def checkpoint(self, path, reason):
        self.checkpoints.append(reason)


@pytest.mark.parametrize("opts,stops", [
    (dict(TINY, dropout=0.25, optimizer="adam"), [5, 17]),        # mid-epoch, twice
    (dict(TINY, decay_after=1, lr=0.7, tie_weights=True), [0]),   # right at the start
    (dict(TINY, model_type="lstm-peephole", epochs=2), None),      # at an epoch's end
])
def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(toy, tmp_path, opts, stops):
    corpus, _ = toy
    full = train(corpus, tmp_path / "full.rnnkit", **opts)
    out = tmp_path / "part.rnnkit"
    windows = math.ceil((len(corpus["train"]) // opts["batch"]) / opts["bptt"])
    for i, n in enumerate(stops or [windows]):
        ev = StopAfter(n)
        with pytest.raises(TrainingInterrupted, match="continue with the same command and "
                                                      "--resume"):
            train(corpus, out, TrainOptions(**dict(opts, resume=i > 0)), ev)
        assert checkpoint_path(out).exists() and ev.checkpoints[-1] == "interrupted"
    # resume with default options: the checkpoint's own options are used
    resumed = train(corpus, out, TrainOptions(resume=True, threads=1))
    assert_same_weights(tmp_path / "full.rnnkit", out)
    assert resumed["test_perplexity"] == full["test_perplexity"]
    assert resumed["valid_perplexity"] == full["valid_perplexity"]
    assert not checkpoint_path(out).exists()  # removed once training finished
    recs = [json.loads(line) for line in metrics_path(out).read_text().splitlines()]
    full_recs = [json.loads(line) for line in metrics_path(tmp_path / "full.rnnkit").read_text()
                 .splitlines()]
    strip = ("seconds", "tokens_per_s")
    assert [{k: v for k, v in r.items() if k not in strip} for r in recs] == \
        [{k: v for k, v in r.items() if k not in strip} for r in full_recs]


def test_periodic_checkpoints(toy, tmp_path):
    corpus, _ = toy
    ev = StopAfter(10 ** 9)
    train(corpus, tmp_path / "m.rnnkit", TrainOptions(**dict(TINY, epochs=1,
                                                               checkpoint_every=1e-9)), ev)
    assert ev.checkpoints.count("periodic") > 3 and ev.checkpoints[-1] == "epoch"


# --- failures, schedule, fine-tuning -------------------------------------------------------------
def test_diverging_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(toy, tmp_path,
                                                                         monkeypatch):
    corpus, _ = toy
    calls = {"n": 0}
    real = RNNLM.forward_backward
    windows = math.ceil((len(corpus["train"]) // TINY["batch"]) / TINY["bptt"])

    def flaky(self, *a, **k):
        calls["n"] += 1
        loss = real(self, *a, **k)
        return float("nan") if calls["n"] > windows + 3 else loss  # into the 2nd epoch

    monkeypatch.setattr(RNNLM, "forward_backward", flaky)
    out = tmp_path / "m.rnnkit"
    with pytest.raises(TrainingError, match=r"training diverged: the loss nan at epoch 2, "
                                            r"window \d+/\d+ .*last good checkpoint .* is kept"):
        train(corpus, out, **dict(TINY, epochs=3))
    _, meta = read_checkpoint(checkpoint_path(out))
    assert meta["position"] == {"epoch": 2, "window": 0} and meta["reason"] == "epoch"
    assert out.exists()  # the best model of epoch 1


def test_a_huge_finite_loss_is_divergence_too(toy, tmp_path):
    # a learning rate of a million: the loss stays finite but past exp's range (was an
    # OverflowError, exit 1)
    corpus, _ = toy
    with pytest.raises(TrainingError, match=r"training diverged: the loss [0-9.e+]+ nats a token "
                                            r"at epoch 1"):
        train(corpus, tmp_path / "m.rnnkit", **dict(TINY, epochs=2, lr=1e6, clip=0))


def test_patience_and_decay_act_on_validation(toy, tmp_path, monkeypatch):
    import rnnkit.training.lm_task as tr

    ppl = iter([50.0, 40.0, 45.0, 46.0, 30.0])
    monkeypatch.setattr(tr, "perplexity", lambda model, ids, batch=1: next(ppl))
    corpus, _ = toy
    s = train(corpus, tmp_path / "m.rnnkit", **dict(TINY, epochs=5, patience=2, decay_after=10,
                                                    lr=1.0))
    recs = [json.loads(x) for x in metrics_path(tmp_path / "m.rnnkit").read_text().splitlines()]
    epochs = [r for r in recs if r["kind"] == "epoch"]
    assert [r["lr"] for r in epochs] == [1.0, 1.0, 1.0, 0.5]  # halved after each epoch that
    assert [r["best"] for r in epochs] == [True, True, False, False]  # did not improve
    assert s["stopped_early"] and s["epochs_run"] == 4 and s["best_epoch"] == 2
    assert s["valid_perplexity"] == 40.0 and recs[-1]["kind"] == "test"


def test_init_from_maps_the_vocabulary_by_token(toy, tmp_path):
    corpus, _ = toy
    train(corpus, tmp_path / "pre.rnnkit", **dict(TINY, epochs=1, hidden=6, emb=5))
    new_words = ["cat", "dog", "zebra", "sat", "yak"]
    other = build_corpus([str(_write(tmp_path / "o.txt", toy_lines(60, 1, new_words)))])
    s = train(other, tmp_path / "fine.rnnkit", **dict(TINY, epochs=0,
                                                     init_from=str(tmp_path / "pre.rnnkit")))
    pre, fine = load(tmp_path / "pre.rnnkit"), load(tmp_path / "fine.rnnkit")
    assert fine.arch.hidden == 6 and fine.arch.emb == 5  # the trained model's architecture
    for t in ("cat", "dog", "sat", "</s>", "<unk>"):
        i, j = fine.vocab.index[t], pre.vocab.index[t]
        np.testing.assert_array_equal(fine.p["encoder.weight"][i], pre.p["encoder.weight"][j])
        np.testing.assert_array_equal(fine.p["decoder.weight"][i], pre.p["decoder.weight"][j])
        assert fine.p["decoder.bias"][i] == pre.p["decoder.bias"][j]
    np.testing.assert_array_equal(fine.p["rnn.weight_hh_l1"], pre.p["rnn.weight_hh_l1"])
    z = fine.vocab.index["zebra"]
    assert np.abs(fine.p["encoder.weight"][z]).max() <= 0.1 + 1e-7  # a fresh row
    assert fine.meta["init_from"]["new_tokens"] == 2
    assert s["epochs_run"] == 0


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the command ---------------------------------------------------------------------------------
def test_train_command_json_table_and_files(toy, tmp_path, capsys):
    _, d = toy
    out = tmp_path / "m.rnnkit"
    code, stdout, err = cli(capsys, "train", d / "data", "--type", "rnn", "--emb", 8, "--hidden",
                            8, "--layers", 1, "--epochs", 2, "--bptt", 5, "--batch", 4,
                            "--threads", 1, "--out", out, "--json")
    assert code == 0, err
    s = json.loads(stdout)
    assert s["model_type"] == "rnn" and s["epochs_run"] == 2 and s["test_perplexity"] > 1
    assert "epoch 2:" in err and "valid ppl" in err
    assert metrics_path(out).exists() and not checkpoint_path(out).exists()
    meta = modelfile.read(out)[1]
    assert meta["training"]["test_perplexity"] == s["test_perplexity"]
    assert meta["training"]["options"]["bptt"] == 5 and meta["architecture"]["hidden"] == 8
    code, stdout, err = cli(capsys, "train", d / "data", "--type", "lstm-nofg", "--emb", 4,
                            "--hidden", 4, "--layers", 1, "--epochs", 1, "--threads", 1,
                            "--batch", 4, "--out", tmp_path / "n.rnnkit")
    assert code == 0 and "test perplexity (best model)" in stdout


@pytest.mark.parametrize("args,message", [
    (["--tie-weights", "--emb", "4", "--hidden", "6"], "--tie-weights needs --emb equal to --hidden"),
    (["--optimizer", "rmsprop"], "unknown --optimizer 'rmsprop'"),
    (["--bptt", "0"], "--bptt 0: must be at least 1"),
    (["--resume"], "no checkpoint to resume from"),
    (["--batch", "100000"], "fewer than --batch 100000"),
    (["--resume", "--init-from", "x.rnnkit"], "cannot be combined with --init-from"),
])
def test_train_command_errors(toy, tmp_path, capsys, args, message):
    _, d = toy
    code, _, err = cli(capsys, "train", d / "data", "--out", tmp_path / "m.rnnkit", *args)
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1


def test_resume_errors(toy, tmp_path, capsys):
    corpus, d = toy
    out = tmp_path / "m.rnnkit"
    with pytest.raises(TrainingInterrupted):
        train(corpus, out, TrainOptions(**TINY), StopAfter(3))
    other = tmp_path / "other"
    build_corpus([str(_write(tmp_path / "o.txt", toy_lines(200, 5, WORDS[:6])))]).write(other)
    code, _, err = cli(capsys, "train", other, "--out", out, "--resume")
    assert code == 2 and "vocabulary mismatch" in err and "resume with the same data" in err
    data = checkpoint_path(out).read_bytes()
    checkpoint_path(out).write_bytes(data[:len(data) // 2])
    code, _, err = cli(capsys, "train", d / "data", "--out", out, "--resume")
    assert code == 2 and "damaged or truncated" in err
    from safetensors.numpy import save_file

    for bad_meta in ("{not json", json.dumps({"format": "rnnkit-checkpoint",
                                              "format_version": 1})):
        save_file({"params": np.zeros(3, np.float32)}, str(checkpoint_path(out)),
                  metadata={"rnnkit-checkpoint": bad_meta})
        code, _, err = cli(capsys, "train", d / "data", "--out", out, "--resume")
        assert code == 2 and "damaged" in err and len(err.strip().splitlines()) == 1, err
    save_file({"params": np.zeros(3, np.float32)}, str(checkpoint_path(out)),
              metadata={"rnnkit-checkpoint": json.dumps({"format": "rnnkit-checkpoint",
                                                         "format_version": 7})})
    code, _, err = cli(capsys, "train", d / "data", "--out", out, "--resume")
    assert code == 2 and "version 7 is not supported" in err


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_identically(toy, tmp_path, sig, code):
    """A real process gets SIGINT (or a scheduler's SIGTERM); it exits 130 (143) with a
    checkpoint; --resume gives the weights of an uninterrupted run."""
    corpus, d = toy
    opts = ["--emb", "16", "--hidden", "16", "--layers", "2", "--bptt", "4", "--batch", "2",
            "--epochs", "6", "--threads", "1", "--seed", "3"]
    train(corpus, tmp_path / "full.rnnkit", **dict(emb=16, hidden=16, layers=2, bptt=4, batch=2,
                                                   epochs=6, threads=1, seed=3))
    out = tmp_path / "m.rnnkit"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "rnnkit", "train", str(d / "data"), "--out",
                          str(out), *opts], stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env=env)
    line = p.stderr.readline()  # "training lstm: ..." once the loop watches for Ctrl-C
    assert line.startswith("training lstm"), line
    p.send_signal(sig)
    _, rest = p.communicate(timeout=60)
    if p.returncode == 0:  # finished before the signal arrived: nothing left to test
        pytest.skip("training finished before the signal")
    assert p.returncode == code, rest
    assert "interrupted" in rest and "--resume" in rest and "Traceback" not in rest
    assert checkpoint_path(out).exists()
    r = subprocess.run([sys.executable, "-m", "rnnkit", "train", str(d / "data"), "--out",
                        str(out), "--resume", "--threads", "1", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["resumed_from"] is not None
    assert_same_weights(tmp_path / "full.rnnkit", out)
