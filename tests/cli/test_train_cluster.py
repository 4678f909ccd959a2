"""`rnnkit train --type ngram --scheduler/--workers`: the CLI glue of the Dask estimator, on
a local cluster of 2 processes (tests/conftest.py: dask_client)."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from rnnkit.cli import main


def run(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster") / "en"
    assert main(["prepare", "--sample", "en", "--out", str(d), "--json"]) == 0
    return d


@pytest.mark.parametrize("shared,smoothing", [(False, []), (True, []),
                                              (False, ["--smoothing", "addk", "--add-k", "0.3"])])
def test_scheduler_model_file_equals_in_memory(dask_client, corpus_dir, tmp_path, capsys, shared,
                                               smoothing):
    address = dask_client.scheduler.address
    mem, dist = tmp_path / "mem.rnnkit", tmp_path / "dask.rnnkit"
    common = ["train", str(corpus_dir), "--type", "ngram", "--order", "4", "--discount-fallback",
              "--json", *smoothing]
    assert run(capsys, *common, "--out", str(mem))[0] == 0
    code, out, err = run(capsys, *common, "--out", str(dist), "--scheduler", address,
                         *(["--shared-data"] if shared else []))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["workers"] == 2 and set(summary["stage_seconds"]) >= {"count", "assemble"}
    a, b = load_file(mem), load_file(dist)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name
    if smoothing:
        import rnnkit
        assert rnnkit.load(dist).meta["add_k"] == rnnkit.load(mem).meta["add_k"] == 0.3


def test_workers_start_a_local_cluster(corpus_dir, tmp_path, capsys):
    """--workers N starts (and stops) its own local cluster of N processes: the one path the
    session cluster does not cover, so one small run with 1 worker."""
    pytest.importorskip("distributed", reason="rnnkit[cluster] (dask) is not installed")
    mem, dist = tmp_path / "mem.rnnkit", tmp_path / "dask.rnnkit"
    common = ["train", str(corpus_dir), "--type", "ngram", "--order", "3", "--discount-fallback"]
    assert run(capsys, *common, "--out", str(mem))[0] == 0
    code, out, err = run(capsys, *common, "--out", str(dist), "--workers", "1")
    assert code == 0, err
    assert "Dask, 1 worker, 2 shards: count" in " ".join(out.split())
    a, b = load_file(mem), load_file(dist)
    assert all(np.array_equal(a[n], b[n]) for n in a) and sorted(a) == sorted(b)
    # and pruned: the same tables as the in-memory estimator's pruned model
    prune = ["--prune", "0", "--prune", "1"]
    assert run(capsys, *common, *prune, "--out", str(mem))[0] == 0
    code, out, err = run(capsys, *common, *prune, "--out", str(dist), "--workers", "1")
    assert code == 0, err
    a, b = load_file(mem), load_file(dist)
    assert all(np.array_equal(a[n], b[n]) for n in a) and sorted(a) == sorted(b)


@pytest.mark.parametrize("args,pattern", [
    (["--shared-data"], "--shared-data goes with --workers or --scheduler"),
    (["--workers", "2", "--memory", "1G"], "are two estimators: choose one"),
    (["--scheduler", "no-port-here"], "could not reach the Dask scheduler at 'no-port-here'"),
    (["--workers", "0"], "--workers 0: must be between 1 and 1024"),
])
def test_cluster_usage_errors_are_one_line_and_exit_2(corpus_dir, tmp_path, capsys, args,
                                                      pattern):
    pytest.importorskip("distributed", reason="rnnkit[cluster] (dask) is not installed")
    code, out, err = run(capsys, "train", str(corpus_dir), "--type", "ngram", "--out",
                         str(tmp_path / "m.rnnkit"), *args)
    assert code == 2
    assert err.startswith("error: ") and pattern in err and err.count("\n") == 1, err
    assert not (tmp_path / "m.rnnkit").exists()


def test_workers_are_for_ngram_models_only(corpus_dir, tmp_path, capsys):
    code, _, err = run(capsys, "train", str(corpus_dir), "--type", "lstm", "--workers", "2",
                       "--out", str(tmp_path / "m.rnnkit"))
    assert code == 2 and "estimate n-gram models only" in err


def test_missing_dask_is_one_error_line_with_the_install_command(corpus_dir, tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    code, _, err = run(capsys, "train", str(corpus_dir), "--type", "ngram", "--workers", "2",
                       "--out", str(tmp_path / "m.rnnkit"))
    assert code == 2 and err.count("\n") == 1
    assert "pip install 'rnnkit[cluster]'" in err
