"""rnnkit: sequence models on the CPU -- n-gram and recurrent language models, sampling, scoring
and N-best rescoring, in one package.

The package is layered (imports point down only; tests/test_layers.py checks it):
  errors  <-  text  <-  modelfile  <-  nn  <-  decoding  <-  models  <-  loader  <-
  training, rescoring  <-  report  <-  cli
See docs/architecture.md.
"""
from ._version import __version__
from .loader import load
from .text.corpus import Corpus
from .text.prepare import prepare

__all__ = ["__version__", "load", "Corpus", "prepare"]
