"""The compiled extensions are built and are what the package uses. Deliberately no
importorskip: a missing build must fail here, not skip the tests meant to catch it."""
import importlib

import pytest

from rnnkit.models.ngram.estimate import index_module
from rnnkit.nn.backend import kernels


@pytest.mark.parametrize("name", ["rnnkit.nn._kernels", "rnnkit.models.ngram._ngram"])
def test_extension_is_compiled(name):
    module = importlib.import_module(name)
    assert module.__file__.endswith((".so", ".pyd")), module.__file__


def test_the_library_uses_the_compiled_modules():
    assert kernels() is importlib.import_module("rnnkit.nn._kernels")
    assert index_module() is importlib.import_module("rnnkit.models.ngram._ngram")
