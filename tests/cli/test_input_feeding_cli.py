"""`rnnkit train --type seq2seq --input-feeding` on the bundled Korean-English sample, through
the command line: the option reaches the model file, training lowers the validation
perplexity far below an untrained model's, and `translate` reads the file back."""
from __future__ import annotations

import json

import numpy as np

import rnnkit
from rnnkit.cli import main
from rnnkit.models.seq2seq import Seq2Seq
from rnnkit.text.parallel import ParallelCorpus
from rnnkit.training.seq2seq_task import pair_perplexity


def test_input_feeding_trains_on_the_sample_and_round_trips(tmp_path, capsys):
    data, model = tmp_path / "ko-en", tmp_path / "feed.rnnkit"
    assert main(["prepare", "--sample", "ko-en", "--parallel", "--out", str(data)]) == 0
    assert main(["train", str(data), "--type", "seq2seq", "--attention", "general",
                 "--input-feeding", "--emb", "24", "--hidden", "32", "--epochs", "4",
                 "--lr", "0.01", "--threads", "1", "--seed", "1", "--out", str(model),
                 "--json"]) == 0
    m = rnnkit.load(model)
    assert isinstance(m, Seq2Seq) and m.arch.input_feeding
    assert m.p["decoder.rnn.weight_ih_l0"].shape == (4 * 32, 24 + 32)
    corpus = ParallelCorpus.load(data)
    valid = list(corpus.pairs("valid"))
    untrained = Seq2Seq(m.arch, m.src_vocab, m.trg_vocab)
    untrained.init_uniform(np.random.default_rng(1), 0.1)
    before, after = pair_perplexity(untrained, valid), pair_perplexity(m, valid)
    assert before > 0.8 * len(m.trg_vocab) and after < before / 5, (before, after)
    src = tmp_path / "src.txt"
    src.write_text("\n".join(corpus.src.tokenizer.join(corpus.src.vocab.decode(s.tolist()))
                             for s, _ in valid[:3]) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["translate", str(model), str(src), "--beam", "1", "--json"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(recs) == 3 and all(r["translation"] for r in recs)
    code = main(["train", str(data), "--type", "seq2seq", "--attention", "none",
                 "--input-feeding", "--epochs", "1", "--out", str(tmp_path / "x.rnnkit")])
    assert code == 2 and "needs --attention" in capsys.readouterr().err
