"""`rnnkit doctor`: a real `python -m rnnkit` process, its table and its JSON, following
RNNKIT_ISA and RNNKIT_NUM_THREADS."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

K = pytest.importorskip("rnnkit.nn._kernels")


def doctor(*args, **env):
    return subprocess.run([sys.executable, "-m", "rnnkit", "doctor", *args], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **env})


@pytest.mark.parametrize("path", K.supported_isas())
def test_doctor_json_reports_the_selected_path_and_threads(path):
    r = doctor("--json", RNNKIT_ISA=path, RNNKIT_NUM_THREADS="1")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["kernel_path"], d["threads"]) == (path, 1)
    assert d["gemm_backend"] == ("blas" if path == "generic" else "packed")
    assert d["supported_paths"] == K.supported_isas()
    assert d["cpu"] and d["blas"] and all(lib["internal_api"] for lib in d["blas"])
    if "avx512" in d["supported_paths"]:
        assert d["flags"]["avx512f"]


def test_doctor_table_names_cpu_path_threads_and_blas():
    r = doctor(RNNKIT_NUM_THREADS="2")
    assert r.returncode == 0, r.stderr
    best = K.supported_isas()[-1]
    rows = {line.split()[1]: line for line in r.stdout.splitlines() if len(line.split()) > 3}
    assert f" {best} (supported here: " in rows["kernel"]
    assert " 2 of " in rows["threads"]
    assert "CPU" in rows and "microarchitecture" in rows and "BLAS" in rows, r.stdout


def test_doctor_warns_about_a_path_it_cannot_take():
    r = doctor("--json", RNNKIT_ISA="neon")
    assert r.returncode == 0
    assert "RNNKIT_ISA='neon' is not one of generic, avx2, avx512" in r.stderr
    assert json.loads(r.stdout)["kernel_path"] == K.supported_isas()[-1]
