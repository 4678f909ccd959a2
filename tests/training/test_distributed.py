"""Data-parallel training over MPI (`mpiexec -n 2 rnnkit train ... --distributed`): two ranks
with --batch B give the weights of one process with --batch B (to float summation tolerance),
rank 0 alone writes the files, Ctrl-C and --resume work with the same number of ranks, and a
rank that dies ends the job instead of hanging it. Runs real mpiexec processes (MPICH from the
`mpich` wheel of the test extra); skipped, saying why, where mpiexec or mpi4py is missing."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnnkit import modelfile
from rnnkit.cli import main
from rnnkit.text.prepare import build_corpus
from rnnkit.training import TrainingInterrupted, TrainOptions, train
from rnnkit.training.checkpoint import checkpoint_path, metrics_path, read_checkpoint
from rnnkit.training.loop import TrainEvents

MPIEXEC = (shutil.which("mpiexec", path=os.path.dirname(sys.executable))
           or shutil.which("mpiexec"))
WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "rug", "big"]
TINY = ["--emb", "8", "--hidden", "8", "--layers", "2", "--bptt", "6", "--batch", "4",
        "--threads", "1"]


def _need_mpi():
    if MPIEXEC is None:
        pytest.skip("mpiexec not found: pip install 'rnnkit[mpi]' (or the test extra) for it")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed: pip install 'rnnkit[mpi]'")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("mpi")
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, rng.integers(2, 8))) for _ in range(240)]
    (d / "text.txt").write_text("\n".join(lines) + "\n")
    corpus = build_corpus([str(d / "text.txt")], split="0.8,0.1,0.1")
    corpus.write(d / "data")
    return corpus, d / "data"


def mpirun(n, *args, timeout=120):
    """`mpiexec -n n python -m rnnkit ...`: the CompletedProcess."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, "-m", "rnnkit",
                           *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env)


def interrupt_two_ranks(args, out, first_line: str) -> None:
    """Start `mpiexec -n 2 rnnkit train ARGS --out OUT --distributed`, send SIGINT once training
    has begun, and check that it stopped with one checkpoint (skips when training finished
    first)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "rnnkit", "train",
                          *map(str, args), "--out", str(out), "--distributed"],
                         stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    line = p.stderr.readline()
    assert line.startswith(first_line), line
    time.sleep(0.5)   # rank 1 enters the loop too
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    if p.returncode == 0 or (p.returncode != 130 and "checkpoint written" not in err
                             and out.exists() and not checkpoint_path(out).exists()):
        # the run had finished (model written, checkpoint removed): the signal came after it,
        # during the interpreter's exit, which mpiexec reports as the signal's number
        pytest.skip("training finished before SIGINT")
    assert p.returncode == 130, err[-3000:]
    assert err.count("checkpoint written") == 1   # rank 0 reports


def weights(path):
    return modelfile.read(path)[0]


@pytest.mark.parametrize("output", [[], ["--output", "adaptive", "--cutoffs", "5,9",
                                                  "--div-value", "2"]])
def test_two_ranks_give_the_weights_of_one_process_with_the_whole_batch(data, tmp_path, output):
    _need_mpi()
    _, d = data
    one, two = tmp_path / "one.rnnkit", tmp_path / "two.rnnkit"
    code = main(["train", str(d), *TINY, "--epochs", "2", *output, "--out", str(one)])
    assert code == 0
    r = mpirun(2, "train", d, *TINY, "--epochs", "2", *output, "--out", two, "--distributed",
               "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)   # rank 0 alone prints the summary
    assert s["ranks"] == 2 and s["allreduce_ms_per_step"] > 0
    assert r.stderr.count("2 MPI ranks") == 1   # and the progress view
    a, b = weights(one), weights(two)
    assert a.keys() == b.keys()
    for k in a:   # the same sums in another order: float32 rounding apart
        np.testing.assert_allclose(b[k], a[k], atol=2e-5, err_msg=k)
    # rank 0 alone writes the metrics: one record per line, as one process writes them
    recs = [json.loads(x) for x in metrics_path(two).read_text().splitlines()]
    assert len(recs) == len(metrics_path(one).read_text().splitlines())
    assert not checkpoint_path(two).exists()


def test_ctrl_c_and_resume_with_the_same_ranks(data, tmp_path):
    """SIGINT to mpiexec reaches every rank; they agree (through the allreduce) to stop at the
    same window; rank 0 writes one checkpoint with both ranks' state; --resume on 2 ranks ends
    with the weights of an uninterrupted 2-rank run, and without mpiexec it is refused."""
    _need_mpi()
    _, d = data
    opts = [*TINY, "--epochs", "20", "--seed", "3", "--bptt", "3"]
    whole = tmp_path / "whole.rnnkit"
    assert mpirun(2, "train", d, *opts, "--out", whole, "--distributed").returncode == 0
    out = tmp_path / "m.rnnkit"
    interrupt_two_ranks([d, *opts], out, "training lstm")
    tensors, meta = read_checkpoint(checkpoint_path(out))
    assert meta["ranks"] == 2 and len(meta["rng_ranks"]) == 2
    assert tensors["state.h"].shape == (2, 4, 8)   # [L, B, H]: both ranks' streams
    # one process cannot continue a 2-rank run
    code = main(["train", str(d), *opts, "--out", str(out), "--resume"])
    assert code == 2
    r = mpirun(2, "train", d, *opts, "--out", out, "--resume", "--distributed")
    assert r.returncode == 0, r.stderr
    a, b = weights(whole), weights(out)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k   # bit for bit


def test_resume_with_another_rank_count_is_refused(data, tmp_path, capsys):
    _need_mpi()
    corpus, d = data
    out = tmp_path / "m.rnnkit"

    class StopAt3(TrainEvents):
        n = 0

        def window(self, *a):
            self.n += 1

        def should_stop(self):
            return self.n >= 3

    with pytest.raises(TrainingInterrupted):
        train(corpus, out, TrainOptions(emb=8, hidden=8, layers=2, bptt=6, batch=4, epochs=2,
                                        threads=1), StopAt3())
    r = mpirun(2, "train", d, *TINY, "--out", out, "--resume", "--distributed")
    assert r.returncode != 0
    assert "written by a run of 1 rank(s); resume with the same number" in r.stderr


def test_batch_that_does_not_divide_among_ranks(data, tmp_path):
    _need_mpi()
    _, d = data
    r = mpirun(2, "train", d, *TINY, "--batch", "3", "--out", tmp_path / "m.rnnkit",
               "--distributed")
    assert r.returncode != 0
    assert "error: --batch 3 does not divide among 2 ranks: use a multiple of 2" in r.stderr


def _rank_pid(marker: str, rank: int) -> int | None:
    """The pid of the rank `rank` process whose command line holds marker (Linux /proc)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmd and f"PMI_RANK={rank}\0".encode() in environ:
            return int(proc.name)
    return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the rank's process in /proc")
def test_a_dead_rank_ends_the_job_with_a_clear_error(data, tmp_path):
    """SIGKILL to rank 1 in the middle of training: mpiexec ends rank 0 (which would wait in
    the allreduce for ever) and reports the dead rank."""
    _need_mpi()
    _, d = data
    out = tmp_path / "dies.rnnkit"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "rnnkit", "train", str(d),
                          *TINY, "--epochs", "1000", "--out", str(out), "--distributed"],
                         stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stderr.readline().startswith("training lstm")
        pid = _rank_pid(str(out), 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        stdout, err = p.communicate(timeout=60)   # a hang fails here
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0
    report = stdout + err   # Hydra writes its report to stdout
    assert "BAD TERMINATION" in report and "Killed (signal 9)" in report, report


def test_distributed_is_for_recurrent_models(data, tmp_path, capsys):
    _, d = data
    code = main(["train", str(d), "--type", "ngram", "--distributed", "--out",
                 str(tmp_path / "m.rnnkit")])
    err = capsys.readouterr().err
    assert code == 2 and "--distributed trains recurrent models" in err


def test_distributed_without_mpi4py_says_how_to_get_it(data, tmp_path, capsys, monkeypatch):
    _, d = data
    monkeypatch.setitem(sys.modules, "mpi4py", None)   # import mpi4py now raises ImportError
    code = main(["train", str(d), *TINY, "--distributed", "--out", str(tmp_path / "m.rnnkit")])
    err = capsys.readouterr().err
    assert code == 2 and "--distributed needs mpi4py" in err and "rnnkit[mpi]" in err


# --- translation and captioning: buckets of independent examples ---------------------------------
# 57 training examples in buckets of 8: the last bucket holds 1, so rank 1 has none of it (its
# gradient is zero, the allreduce still sums the right one)
S2S = ["--type", "seq2seq", "--emb", "8", "--hidden", "8", "--batch", "8", "--epochs", "2",
       "--threads", "1", "--lr", "0.02", "--seed", "1"]


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mpi-pairs")
    rng = np.random.default_rng(0)
    for split, n in (("train", 57), ("valid", 10)):
        src = [" ".join(rng.choice(WORDS, rng.integers(2, 7))) for _ in range(n)]
        (d / f"{split}.src").write_text("\n".join(src) + "\n")
        (d / f"{split}.trg").write_text("\n".join(" ".join(s.split()[::-1]) for s in src) + "\n")
    assert main(["prepare", str(d / "train.src"), str(d / "train.trg"), "--parallel", "--valid",
                 str(d / "valid.src"), str(d / "valid.trg"), "--out", str(d / "data")]) == 0
    return d / "data"


@pytest.fixture(scope="module")
def captions_dir(tmp_path_factory):
    """40 images (2 of them held out for validation), 57 captions, random features [40, 6]."""
    from rnnkit.text.captions import Features, write_features

    d = tmp_path_factory.mktemp("mpi-captions")
    rng = np.random.default_rng(1)
    ids = [f"img{i:02d}.png" for i in range(40)]
    lines = [f"{ids[i % 40]}\t{' '.join(rng.choice(WORDS, rng.integers(2, 7)))}" for i in range(57)]
    (d / "captions.tsv").write_text("\n".join(lines) + "\n")
    write_features(d / "feats.safetensors", Features(ids, rng.standard_normal((40, 6))
                                                     .astype(np.float32)))
    return d


def _assert_same_weights(a, b, atol=2e-5):
    assert a.keys() == b.keys()
    for k in a:   # the same sums in another order: float32 rounding apart
        np.testing.assert_allclose(b[k], a[k], atol=atol, err_msg=k)


@pytest.mark.parametrize("kind", ["seq2seq", "caption"])
def test_two_ranks_train_translation_and_caption_models_as_one_process(
        pairs_dir, captions_dir, tmp_path, kind):
    _need_mpi()
    if kind == "seq2seq":
        args = [pairs_dir, *S2S, "--attention", "general", "--bidirectional"]
    else:
        args = [captions_dir, *S2S, "--features", captions_dir / "feats.safetensors"]
        args[args.index("seq2seq")] = "caption"
    one, two, half = tmp_path / "one.rnnkit", tmp_path / "two.rnnkit", tmp_path / "half.rnnkit"
    assert main(["train", *map(str, args), "--out", str(one)]) == 0
    r = mpirun(2, "train", *args, "--out", two, "--distributed", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)   # rank 0 alone prints the summary
    assert s["ranks"] == 2 and s["model_type"] == kind and s["allreduce_ms_per_step"] > 0
    _assert_same_weights(weights(one), weights(two))
    # what one rank alone would learn from its half of each batch is another model: the
    # comparison above can tell
    i = args.index("--batch")
    assert main(["train", *map(str, args[:i + 1]), "4", *map(str, args[i + 2:]),
                 "--out", str(half)]) == 0
    a, h = weights(one), weights(half)
    assert max(float(np.abs(a[k] - h[k]).max()) for k in a) > 1e-3
    # rank 0 alone writes the metrics, with the perplexity (and BLEU) it measured
    recs = [json.loads(x) for x in metrics_path(two).read_text().splitlines()]
    ones = [json.loads(x) for x in metrics_path(one).read_text().splitlines()]
    assert len(recs) == len(ones)
    for r2, r1 in zip(recs, ones):
        if r1["kind"] == "epoch":
            assert r2["valid_ppl"] == pytest.approx(r1["valid_ppl"], rel=1e-5)
            assert r2.get("valid_bleu") == r1.get("valid_bleu")
            assert r2["tokens"] == r1["tokens"]   # every rank's tokens counted once
    assert not checkpoint_path(two).exists()


def test_translation_batch_that_does_not_divide_among_ranks(pairs_dir, tmp_path):
    _need_mpi()
    r = mpirun(2, "train", pairs_dir, *S2S, "--batch", "5", "--out", tmp_path / "m.rnnkit",
               "--distributed")
    assert r.returncode != 0
    assert "error: --batch 5 does not divide among 2 ranks" in r.stderr and "pairs" in r.stderr


@pytest.mark.parametrize("kind", ["seq2seq", "caption"])
def test_translation_and_caption_ctrl_c_and_resume_with_the_same_ranks(
        pairs_dir, captions_dir, tmp_path, kind):
    """As test_ctrl_c_and_resume_with_the_same_ranks, for the bucketed models: SIGINT to
    mpiexec stops both ranks after the same batch, rank 0 writes one checkpoint, and --resume
    on 2 ranks ends bit for bit where an uninterrupted 2-rank run does."""
    _need_mpi()
    e = S2S.index("--epochs")
    s2s = S2S[:e + 1] + ["150"] + S2S[e + 2:]   # long enough for the signal to come first
    if kind == "seq2seq":
        args = [pairs_dir, *s2s, "--attention", "general"]
    else:
        args = [captions_dir, *s2s, "--features", captions_dir / "feats.safetensors"]
        args[args.index("seq2seq")] = "caption"
    whole, out = tmp_path / "whole.rnnkit", tmp_path / "m.rnnkit"
    r = mpirun(2, "train", *args, "--out", whole, "--distributed")
    assert r.returncode == 0, r.stderr
    interrupt_two_ranks(args, out, "training")
    _, meta = read_checkpoint(checkpoint_path(out))
    assert meta["ranks"] == 2
    r = mpirun(2, "train", *args, "--out", out, "--resume", "--distributed")
    assert r.returncode == 0, r.stderr
    a, b = weights(whole), weights(out)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k   # bit for bit
