"""The command line for prepare and synth: real runs on files (CliRunner on the app, and real
`python -m rnnkit` / console-script processes), --version and --help, and every bad input as one
`error:` line on stderr with exit code 2."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import rnnkit
from rnnkit.cli import app, main
from rnnkit.text.prepare import Corpus

runner = CliRunner()
ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}


def run_module(*args, stdin: bytes | None = None):
    """`python -m rnnkit ARGS` in a real process."""
    return subprocess.run([sys.executable, "-m", "rnnkit", *args], input=stdin,
                          capture_output=True, env=ENV, timeout=120)


def run_main(capsys, args):
    """main(args) in this process: the entry point that turns errors into exit codes."""
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version_is_the_same_everywhere(capsys):
    expected = f"rnnkit {rnnkit.__version__}"
    assert runner.invoke(app, ["--version"]).stdout.strip() == expected
    assert run_main(capsys, ["--version"])[:2] == (0, expected + "\n")
    module = run_module("--version")
    assert (module.returncode, module.stdout.decode().strip()) == (0, expected)
    script = Path(sys.executable).parent / "rnnkit"
    if not script.exists():
        script = shutil.which("rnnkit")
    if script is None:
        pytest.skip("the rnnkit console script is not installed")
    console = subprocess.run([str(script), "--version"], capture_output=True, env=ENV, timeout=60)
    assert (console.returncode, console.stdout, console.stderr) == (
        module.returncode, module.stdout, module.stderr)


def test_help_lists_the_commands():
    r = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    for cmd in ("prepare", "synth", "train", "score", "tune-interp", "tune-rescore", "diagnose"):
        assert cmd in r.stdout
    assert "tune-weights" not in r.stdout  # the hidden alias of the two tune commands


COMMANDS = sorted(typer.main.get_command(app).commands)


def test_every_command_is_registered():
    assert COMMANDS == sorted([
        "prepare", "synth", "train", "translate", "evaluate", "features", "caption", "score", "generate", "export", "import-torch", "rescore",
        "tune-interp", "tune-rescore", "tune-weights", "plot", "diagnose", "doctor"])


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help_with_an_example(cmd):
    r = runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "Example" in r.stdout and "--json" in r.stdout
    assert typer.main.get_command(app).commands[cmd].epilog.count("rnnkit ") >= 1


def test_choices_are_listed_in_help():
    r = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert "[mkn|kn|wb|addk|mle]" in r.stdout and "[ngram|lstm|" in r.stdout
    for panel in ("N-gram", "Recurrent model", "Optimisation", "Checkpoints/Output"):
        assert panel in r.stdout


def test_prepare_sample_table_and_json(tmp_path):
    r = runner.invoke(app, ["prepare", "--sample", "en", "--out", str(tmp_path / "en")],
                      env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert re.search(r"train\s*│\s*540\s*│", r.stdout) and "OOV rate" in r.stdout
    r = runner.invoke(app, ["prepare", "--sample", "ko", "--level", "char", "--split",
                            "1,0,0", "--out", str(tmp_path / "ko"), "--json"])
    assert r.exit_code == 0, r.output
    manifest = json.loads(r.stdout)
    assert manifest == Corpus(tmp_path / "ko").manifest
    assert manifest["tokenizer"]["level"] == "char" and list(manifest["splits"]) == ["train"]


def test_prepare_stdin_and_files(tmp_path):
    r = runner.invoke(app, ["prepare", "-", "--out", str(tmp_path / "a"), "--split", "1,0,0",
                            "--json"], input="the cat\n\nthe dog\n")
    assert r.exit_code == 0, r.output
    assert Corpus(tmp_path / "a")["train"].tolist() == [3, 4, 2, 3, 5, 2]
    (tmp_path / "t.txt").write_text("a b\n", encoding="utf-8")
    (tmp_path / "v.txt").write_text("b c\n", encoding="utf-8")
    r = runner.invoke(app, ["prepare", str(tmp_path / "t.txt"), "--valid", str(tmp_path / "v.txt"),
                            "--min-count", "1", "--lowercase", "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    c = Corpus(tmp_path / "b")
    assert c["valid"].tolist() == [4, 0, 2] and c.tokenizer.lowercase


def test_prepare_in_a_real_process(tmp_path):
    r = run_module("prepare", "--sample", "ko", "--out", str(tmp_path / "ko"), "--json")
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["splits"]["train"]["sentences"] == 540
    r = run_module("prepare", "-", "--out", str(tmp_path / "in"), "--split", "1,0,0", "--json",
                   stdin="하나 둘\n둘\n".encode("utf-8"))
    assert r.returncode == 0, r.stderr.decode()
    assert Corpus(tmp_path / "in").vocab.tokens[3:] == ["둘", "하나"]


def test_synth_command(tmp_path):
    out = tmp_path / "synth.txt"
    r = runner.invoke(app, ["synth", "--out", str(out), "--sentences", "200", "--filler", "3,6",
                            "--vocab", "4", "--seed", "3", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    lines = out.read_text("utf-8").splitlines()
    assert summary["sentences"] == len(lines) == 200 and summary["keys"] == 4
    assert all(line.split()[-1] == "a" + line.split()[0][1:] for line in lines)
    assert all(5 <= len(line.split()) <= 8 for line in lines)
    r = run_module("synth", "--out", "-", "--sentences", "200", "--filler", "3,6", "--vocab",
                   "4", "--seed", "3")
    assert r.returncode == 0 and r.stdout.decode().splitlines() == lines  # the same corpus
    assert "200 sentences" in r.stderr.decode()  # the summary goes to stderr, data to stdout


# --- bad input: one `error:` line on stderr, exit code 2 ------------------------------------------
@pytest.fixture
def files(tmp_path):
    (tmp_path / "ok.txt").write_text("a b\nc d\n", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"good line\nbad \xe9 line\n")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("not a corpus")
    return tmp_path


BAD = [
    (["prepare", "{d}/missing.txt", "--out", "{d}/o"], r"missing.txt: no such file"),
    (["prepare", "{d}", "--out", "{d}/o"], r": is a directory, expected a text file"),
    (["prepare", "{d}/bad.txt", "--out", "{d}/o"],
     r"bad.txt:2: invalid UTF-8 at byte 14 of the file \(byte 4 of the line\).*--errors replace"),
    (["prepare", "{d}/empty.txt", "--out", "{d}/o"], r"empty.txt: no sentences"),
    (["prepare", "{d}/ok.txt", "--out", "{d}/theirs"],
     r"theirs: exists and is not an rnnkit corpus directory.*--force"),
    (["prepare", "{d}/ok.txt", "--out", "{d}/o", "--split", "0.9,0.2,0.1"],
     r"--split '0.9,0.2,0.1': the fractions must sum to 1"),
    (["prepare", "{d}/ok.txt", "--out", "{d}/o", "--split", "1.1,-0.1,0"],
     r"a fraction is negative"),
    (["prepare", "{d}/ok.txt", "--out", "{d}/o", "--min-count", "0"],
     r"--min-count 0: must be at least 1"),
    (["prepare", "{d}/ok.txt", "--out", "{d}/o", "--level", "bpe"],
     r"unknown --level 'bpe': use one of word, char"),
    (["prepare", "{d}/ok.txt", "--out", "{d}/o", "--normalize", "nfd"],
     r"unknown --normalize 'nfd': use one of nfc, nfkc, none"),
    (["prepare", "{d}/ok.txt", "--out", "{d}/o", "--errors", "skip"], r"--errors 'skip'"),
    (["prepare", "{d}/ok.txt"], r"--out DIR is required"),
    (["prepare", "--sample", "de", "--out", "{d}/o"], r"unknown sample 'de'"),
    (["prepare", "{d}/ok.txt", "--out", "{d}/o", "--vocab", "{d}/none.txt"],
     r"none.txt: no such vocabulary file"),
    (["synth", "--out", "{d}/s.txt", "--filler", "9,3"], r"--filler 9,3: needs 0 <= MIN <= MAX"),
    (["synth", "--out", "{d}/s.txt", "--sentences", "0"], r"--sentences 0"),
    (["synth"], r"--out FILE is required"),
    (["synth", "--out", "-", "--json"], r"--json prints to stdout"),
    (["synth", "--out", "{d}/nodir/s.txt"], r"directory .*nodir does not exist"),
    (["synth", "--scenes", "2", "--out", "{d}/ok.txt"], r"ok.txt: exists and is not a directory"),
    (["synth", "--scenes", "2", "--out", "{d}/theirs"], r"theirs: exists and is not a scenes"),
    (["train", "{d}/ok.txt", "--type", "ngram", "--out", "{d}/o", "--resume"],
     r"--resume continues gradient training"),
    (["train", "{d}/ok.txt", "--type", "lstm", "--order", "5", "--out", "{d}/o"],
     r"--order does not apply to --type lstm \(it is for --type ngram\)"),
    (["train", "{d}/ok.txt", "--type", "ngram", "--hidden", "5", "--out", "{d}/o"],
     r"--hidden does not apply to --type ngram"),
    (["train", "{d}/ok.txt", "--type", "rnn", "--bidirectional", "--out", "{d}/o"],
     r"--bidirectional does not apply to --type rnn \(it is for --type seq2seq\)"),
]


@pytest.mark.parametrize("args,pattern", BAD, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD])
def test_bad_input_is_one_error_line_and_exit_2(files, capsys, args, pattern):
    code, out, err = run_main(capsys, [a.format(d=files) for a in args])
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and re.search(pattern, err), err
    assert not (files / "o").exists()  # nothing half-written


def test_errors_replace_and_force_get_past_their_errors(files, capsys):
    code, _, err = run_main(capsys, ["prepare", str(files / "bad.txt"), "--out",
                                     str(files / "o"), "--errors", "replace", "--json"])
    assert code == 0, err
    assert "\ufffd" in Corpus(files / "o").vocab.tokens
    code, _, err = run_main(capsys, ["prepare", str(files / "ok.txt"), "--out",
                                     str(files / "theirs"), "--force", "--json"])
    assert code == 0, err
    assert np.array_equal(Corpus(files / "theirs")["train"][-3:], [5, 6, 2])


def test_error_in_a_real_process_has_no_traceback(tmp_path):
    r = run_module("prepare", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o"))
    err = r.stderr.decode()
    assert r.returncode == 2
    assert err.splitlines() == [f"error: {tmp_path / 'missing.txt'}: no such file"]
