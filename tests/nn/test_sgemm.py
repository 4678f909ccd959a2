"""The row-major sgemm helper alone against numpy, before any kernel relies on it; and the
compiled module itself (built, and a helpful error when it is missing)."""
import sys

import numpy as np
import pytest

import rnnkit
from rnnkit.errors import RnnkitError

K = pytest.importorskip("rnnkit.nn._kernels")


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 5, 7), (20, 800, 200), (7, 1, 4), (1, 9, 2)])
def test_sgemm_matches_numpy_for_every_transpose(trans_a, trans_b, m, n, k):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    got = K.sgemm(a, b, trans_a=trans_a, trans_b=trans_b)
    assert got.shape == (m, n) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(k))
    c = c0.copy()
    out = K.sgemm(a, b, c, trans_a=trans_a, trans_b=trans_b, alpha=0.5, beta=2.0)
    assert out is c
    np.testing.assert_allclose(c, 0.5 * want + 2.0 * c0, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_sgemm_with_empty_inner_dimension_scales_c():
    c = np.ones((2, 3), np.float32)
    K.sgemm(np.zeros((2, 0), np.float32), np.zeros((0, 3), np.float32), c, beta=3.0)
    np.testing.assert_array_equal(c, 3.0)


def test_sgemm_refuses_bad_input():
    a = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="inner dimensions differ"):
        K.sgemm(a, a)
    with pytest.raises(ValueError, match="b must be float32"):
        K.sgemm(a, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="a must be C-contiguous"):
        K.sgemm(np.zeros((3, 2), np.float32).T, a)
    with pytest.raises(ValueError, match=r"c must have shape \(2, 2\)"):
        K.sgemm(a, a, np.zeros((3, 3), np.float32), trans_b=True)


def test_kernels_is_the_compiled_module():
    assert K.__file__.endswith((".so", ".pyd")), K.__file__
    assert rnnkit.nn.backend.kernels() is K


def test_missing_extension_says_how_to_build_it(monkeypatch):
    monkeypatch.delattr(rnnkit.nn, "_kernels", raising=False)
    monkeypatch.setitem(sys.modules, "rnnkit.nn._kernels", None)  # makes the import fail
    with pytest.raises(RnnkitError, match=r"compiled extension is missing.*pip install"):
        rnnkit.nn.backend.kernels()


# BLAS, and the packed kernel on every instruction-set path this CPU can run (csrc/rk_isa.h)
BACKENDS = ["blas"] + [f"packed-{p}" for p in K.supported_isas() if p != "generic"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    old, old_backend = K.get_isa(), K.gemm_backend()
    if request.param != "blas":
        K.set_isa(request.param.split("-")[1])
    K.gemm_backend(request.param.split("-")[0])
    yield request.param
    K.set_isa(old)
    K.gemm_backend(old_backend)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 5, 7), (20, 800, 200), (13, 33, 1100),
                                   (125, 70, 9), (1, 47, 3), (4, 17, 1600)])
def test_layer_product_matches_numpy_on_every_backend(backend, trans_a, trans_b, m, n, k):
    # the packed kernel: edges of its 10 x 32 register block and of the 16 x 16 blocks packing
    # transposes, K cut into 2 and 3 cache blocks (at most 768 each), M past its 120-row block
    rng = np.random.default_rng(m + n + k)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    got = K.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(k))
    c = np.full((m, n), np.nan, np.float32)  # beta = 0 never reads C
    np.testing.assert_allclose(K.matmul(a, b, c, trans_a=trans_a, trans_b=trans_b), want,
                               rtol=1e-4, atol=1e-4 * np.sqrt(k))
    c = c0.copy()
    K.matmul(a, b, c, trans_a=trans_a, trans_b=trans_b, beta=1.0)
    np.testing.assert_allclose(c, want + c0, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_backend_names_are_checked():
    with pytest.raises(ValueError, match="backend must be 'packed' or 'blas'"):
        K.gemm_backend("mkl")
