"""Parallel corpora: alignment kept through the random split, vocabularies per side or joint,
the training-pair filters and their counts, the directory (two loadable corpora, atomic), subword
units per side or joint, and every reading error naming the file and the line; the CLI through
the runner (`--valid SRC TRG`) and one real process."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rnnkit.cli import app, main
from rnnkit.errors import InputError
from rnnkit.text.corpus import Corpus
from rnnkit.text.parallel import (
    ParallelCorpus,
    build_parallel,
    is_parallel_dir,
    parallel_sample_paths,
    prepare_parallel,
    read_pairs,
)

runner = CliRunner()
SRC = ["a b c", "d e", "", "f g h i j k", "a d"]
TRG = ["x y", "z w v", "", "q", "x z"]


def write(path: Path, lines, gz=False) -> str:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if gz:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return str(path)


@pytest.fixture
def files(tmp_path):
    return write(tmp_path / "s.txt", SRC), write(tmp_path / "t.gz", TRG, gz=True)


def test_pairs_by_hand(files):
    p = build_parallel(*files, split="1,0,0")
    # source ranks: a (2), d (2), then b c e f g h i j k by first appearance
    assert p.src.vocab.tokens[3:] == ["a", "d", "b", "c", "e", "f", "g", "h", "i", "j", "k"]
    assert p.trg.vocab.tokens[3:] == ["x", "z", "y", "w", "v", "q"]
    pairs = p.pairs("train")
    assert [(s.tolist(), t.tolist()) for s, t in pairs] == [
        ([3, 5, 6], [3, 5]), ([4, 7], [4, 6, 7]), ([8, 9, 10, 11, 12, 13], [8]), ([3, 4], [3, 4])]
    assert all(s.dtype == np.uint32 and t.dtype == np.uint32 for s, t in pairs)
    assert p.text("train")[1] == ("d e", "z w v")
    assert p.manifest["dropped"] == {"split": "train", "max_length": 0, "max_ratio": 0,
                                     "blank_lines": 1}
    with pytest.raises(KeyError):
        p.pairs("valid")


def test_filters_drop_training_pairs_only_and_count_them(tmp_path, files):
    # "f g h i j k" / "q": 6 tokens (over --max-length 5); "a b c"/"x y" ratio 1.5; "d e"/"z w v" 1.5
    p = build_parallel(*files, split="1,0,0", max_length=5)
    assert p.manifest["dropped"]["max_length"] == 1 and p.manifest["pairs"]["train"] == 3
    p = build_parallel(*files, split="1,0,0", max_ratio=1.4)
    assert p.manifest["dropped"]["max_ratio"] == 3  # 1.5, 1.5 and 6 > 1.4; "a d"/"x z" stays
    assert p.text("train") == [("a d", "x z")]
    # a held-out pair is never filtered
    p = build_parallel(*files, valid=files, max_length=2)
    assert p.manifest["pairs"] == {"train": 1, "valid": 4}  # only "a d" / "x z" is short
    assert p.text("valid")[2] == ("<unk> <unk> <unk> <unk> <unk> <unk>", "<unk>")
    assert len(p.pairs("valid")) == 4
    with pytest.raises(InputError, match="dropped every training pair"):
        build_parallel(*files, split="1,0,0", max_length=1)


def test_the_random_split_keeps_pairs_aligned(tmp_path):
    n = 200
    src = [" ".join(str(i)) + " w" * (i % 4) for i in range(n)]  # "1 2 3 w w w": every digit
    trg = ["t " + " ".join(str(i)) + " u" * (i % 3) for i in range(n)]  # is seen in training
    p = build_parallel(write(tmp_path / "s", src), write(tmp_path / "t", trg), seed=5)
    assert p.manifest["pairs"] == {"train": 180, "valid": 10, "test": 10}
    seen = []
    for split in ("train", "valid", "test"):
        for s, t in p.text(split):
            i = int("".join(c for c in s if c.isdigit()))
            assert t == trg[i]
            seen.append(i)
    assert sorted(seen) == list(range(n))
    q = build_parallel(str(tmp_path / "s"), str(tmp_path / "t"), seed=5)
    assert q.text("test") == p.text("test")
    assert build_parallel(str(tmp_path / "s"), str(tmp_path / "t"), seed=6).text("test") != \
        p.text("test")


def test_joint_vocabulary(files):
    p = build_parallel(*files, split="1,0,0", joint_vocab=True)
    assert p.src.vocab.tokens == p.trg.vocab.tokens
    assert {"a", "x", "q"} <= set(p.src.vocab.tokens)
    assert int(p.src.vocab.counts[p.src.vocab.index["x"]]) == 2
    assert int(p.src.vocab.counts[1]) == 8  # one <s> per sentence on either side
    s, t = p.pairs("train")[0]
    assert p.src.decode(s) == "a b c" and p.trg.decode(t) == "x y"


def test_the_directory_holds_two_corpora(tmp_path, files):
    out = tmp_path / "pd"
    m = prepare_parallel(*files, out, valid=files, min_count=2)
    assert is_parallel_dir(out) and m["format"] == "rnnkit-parallel"
    on_disk = json.loads((out / "manifest.json").read_text("utf-8"))
    assert on_disk["pairs"] == {"train": 4, "valid": 4} and on_disk["options"]["min_count"] == 2
    src, trg = Corpus.load(out / "src", verify=True), Corpus.load(out / "trg", verify=True)
    assert src.vocab.tokens == ["<unk>", "<s>", "</s>", "a", "d"]
    assert next(trg.text("valid")) == "x <unk>"
    loaded = ParallelCorpus.load(out)
    assert [(s.tolist(), t.tolist()) for s, t in loaded.pairs("valid")] == \
        [(s.tolist(), t.tolist()) for s, t in build_parallel(*files, valid=files,
                                                              min_count=2).pairs("valid")]
    # replacing a parallel directory is allowed; a monolingual corpus is not a parallel one
    prepare_parallel(*files, out, split="1,0,0")
    assert ParallelCorpus.load(out).manifest["pairs"] == {"train": 4}
    with pytest.raises(InputError, match="monolingual corpus: prepare two aligned files"):
        ParallelCorpus.load(out / "src")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("keep")
    with pytest.raises(InputError, match="not an rnnkit corpus directory"):
        prepare_parallel(*files, tmp_path / "other")


def test_subword_units_per_side_or_joint(tmp_path):
    ko, en = parallel_sample_paths("ko-en")
    sep = build_parallel(ko, en, level="subword", vocab_size=200, split="1,0,0")
    joint = build_parallel(ko, en, level="subword", vocab_size=400, joint_vocab=True,
                           split="1,0,0")
    assert sep.src.tokenizer != sep.trg.tokenizer
    assert joint.src.tokenizer == joint.trg.tokenizer
    assert joint.src.vocab.tokens == joint.trg.vocab.tokens
    for p in (sep, joint):
        s, t = p.text("train")[0]
        assert (s, t) == (ko.read_text("utf-8").splitlines()[0],
                          en.read_text("utf-8").splitlines()[0])
    again = build_parallel(ko, en, level="subword", vocab_size=200, split="1,0,0")
    assert again.src.tokenizer == sep.src.tokenizer and again.trg.tokenizer == sep.trg.tokenizer


# -- errors: each names the file and the line -------------------------------------------------
def test_line_counts_that_differ(tmp_path):
    s = write(tmp_path / "s.txt", ["a", "b", "c"])
    t = write(tmp_path / "t.txt", ["x", "y"])
    with pytest.raises(InputError, match=r"t\.txt: ends at line 2, but .*s\.txt has a line 3"):
        read_pairs(s, t)
    with pytest.raises(InputError, match=r"t\.txt: ends at line 2, but .*s\.txt has a line 3"):
        read_pairs(t, s)


def test_an_empty_side(tmp_path):
    s = write(tmp_path / "s.txt", ["a", "  ", "c"])
    t = write(tmp_path / "t.txt", ["x", "y", "z"])
    with pytest.raises(InputError, match=r"s\.txt:2: empty line, but line 2 of .*t\.txt is not"):
        build_parallel(s, t)


def test_invalid_utf8(tmp_path):
    s = write(tmp_path / "s.txt", ["a", "b"])
    t = tmp_path / "t.txt"
    t.write_bytes(b"x\ny \xff z\n")
    with pytest.raises(InputError, match=r"t\.txt:2: invalid UTF-8 at byte 4 .*--errors replace"):
        build_parallel(s, str(t))
    p = build_parallel(s, str(t), errors="replace", split="1,0,0")
    assert p.text("train")[1] == ("b", "y \ufffd z")


@pytest.mark.parametrize("kw, match", [
    (dict(max_length=0), "--max-length 0: must be at least 1"),
    (dict(max_ratio=0.5), "--max-ratio 0.5: must be at least 1"),
    (dict(valid=("a",)), "--valid with --parallel needs two files"),
    (dict(split="0.5,0.5"), "expected three fractions"),
    (dict(level="word", vocab_size=10), "needs --level subword"),
    (dict(sample="xx-yy", src=None, trg=None), "unknown parallel sample 'xx-yy'"),
])
def test_option_errors(files, kw, match):
    kw = {"src": files[0], "trg": files[1], **kw}
    with pytest.raises(InputError, match=match):
        build_parallel(kw.pop("src"), kw.pop("trg"), **kw)


# -- the command line ---------------------------------------------------------------------------
def test_cli_parallel_with_valid_and_test(tmp_path, files):
    out = tmp_path / "pd"
    r = runner.invoke(app, ["prepare", *files, "--parallel", "--valid", *files, "--test",
                            *files, "--max-length", "5", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["pairs"] == {"train": 3, "valid": 4, "test": 4}
    assert m["dropped"]["max_length"] == 1
    assert ParallelCorpus.load(out).text("test")[0] == ("a b c", "x y")
    r = runner.invoke(app, ["prepare", *files, "--parallel", "--out", str(tmp_path / "t2"),
                            "--split", "1,0,0", "--max-ratio", "1.4"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "1 train" not in r.stdout and "3 by --max-ratio" in r.stdout


@pytest.mark.parametrize("args, match", [
    (["--parallel"], "--parallel needs two files, SRC TRG"),
    (["--valid", "S", "--max-length", "3"], "--max-length is for parallel corpora"),
    (["--parallel", "--valid", "V"], "--valid with --parallel needs two files"),
    (["--sample", "ko-en"], "--sample ko-en is a parallel corpus: add --parallel"),
])
def test_cli_errors(tmp_path, files, capsys, args, match):
    args = [a if a not in ("S", "V") else files[0] for a in args]
    first = [files[0]] if "--parallel" in args and "--valid" not in args else list(files)
    if "--sample" in args:
        first = []
    code = main(["prepare", *first, *args, "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith("error: ") and match in captured.err


def test_cli_misaligned_files_in_a_real_process(tmp_path):
    s = write(tmp_path / "s.txt", ["a", "b", "c"])
    t = write(tmp_path / "t.txt", ["x", "y"])
    r = subprocess.run([sys.executable, "-m", "rnnkit", "prepare", s, t, "--parallel", "--out",
                        str(tmp_path / "o")], capture_output=True, timeout=120)
    assert r.returncode == 2 and r.stdout == b""
    assert r.stderr.decode().startswith(f"error: {t}: ends at line 2, but {s} has a line 3")
    assert not (tmp_path / "o").exists()


# -- the bundled Korean-English sample ----------------------------------------------------------
def test_the_sample_is_what_make_samples_writes(tmp_path):
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_samples.py"
    if not script.exists():
        pytest.skip("scripts/ is not shipped with the installed package")
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    for path in parallel_sample_paths("ko-en"):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()


def test_the_sample_pairs(tmp_path, capsys):
    ko, en = (p.read_text("utf-8").splitlines() for p in parallel_sample_paths("ko-en"))
    assert len(ko) == len(en) == 3000 and len(set(ko)) == 3000
    assert (ko[0], en[0]) == ("자세히 보아야 예쁘다", "it is beautiful to see closely")
    pairs = dict(zip(ko, en))
    assert pairs["오래 보아야 사랑스럽다"] == "it is lovely to see for a long time"
    # particles follow the final consonant: 학생 (final ㅇ) 이/은/을, 요리사 (open) 가/는/를
    words = {w for line in ko for w in line.split()}
    assert {"학생이", "학생은", "요리사가", "요리사는", "사과를", "빵을"} <= words
    assert not {"학생가", "학생는", "요리사이", "요리사은", "사과을", "빵를"} & words
    # English agreement: singular subjects take -s in the present, plural ones do not
    singular = {"eats", "drinks", "makes", "is", "does", "was"}
    plural = {"eat", "drink", "make", "are", "do", "were"}
    sg = {e.split()[2] for e in en if e.startswith("the student ")}
    pl = {e.split()[2] for e in en if e.startswith("the students ")}
    assert sg & singular and not sg & plural and pl & plural and not pl & singular
    # SOV -> SVO: the Korean verb comes last, the English verb second
    ate = [pairs[k].split() for k in ko if k.endswith(" 먹었다") and " 안 " not in k]
    assert len(ate) > 10 and all(e.index("ate") <= 2 and len(e) - e.index("ate") >= 3
                                 for e in ate)
    # a few hundred words per side at most, and held-out sentences are new to training
    assert 120 < len(words) < 400 and 120 < len({w for e in en for w in e.split()}) < 400
    code = main(["prepare", "--sample", "ko-en", "--parallel", "--out", str(tmp_path / "ke"),
                 "--json"])
    m = json.loads(capsys.readouterr().out)
    assert code == 0 and m["pairs"] == {"train": 2700, "valid": 150, "test": 150}
    assert m["options"]["sample"] == "ko-en" and m["options"]["split"] == [0.9, 0.05, 0.05]
    p = ParallelCorpus.load(tmp_path / "ke")
    train = {s for s, _ in p.text("train")}
    assert not train & {s for s, _ in p.text("test")}
    assert all(pairs[s] == t for split in ("train", "valid", "test") for s, t in p.text(split))


def test_a_language_model_on_a_parallel_directory_says_what_to_do(tmp_path, files, capsys):
    prepare_parallel(*files, tmp_path / "pd", split="1,0,0")
    with pytest.raises(InputError, match="it is a parallel corpus .* --type seq2seq, or use its "
                                         "src/ or trg/"):
        Corpus.load(tmp_path / "pd")
    code = main(["train", str(tmp_path / "pd"), "--type", "lstm", "--out",
                 str(tmp_path / "m.rnnkit")])
    assert code == 2 and "--type seq2seq" in capsys.readouterr().err
    assert Corpus.load(tmp_path / "pd" / "trg").vocab.tokens[3] == "x"
