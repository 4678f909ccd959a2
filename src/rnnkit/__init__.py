"""rnnkit: sequence models on the CPU -- n-gram and recurrent language models, sampling, scoring
and N-best rescoring, in one package.

The package is layered (imports point down only; tests/test_layers.py checks it):
  errors  <-  text  <-  modelfile  <-  nn  <-  decoding  <-  models  <-  loader  <-
  training, rescoring  <-  report  <-  cli
See docs/architecture.md.

The public names are imported on first use, so that `import rnnkit` (and so `python -m rnnkit`
before its error boundary is in place) does no heavy work: a Ctrl-C in the first fraction of a
second is then caught like any later one.
"""
__all__ = ["__version__", "load", "Corpus", "prepare"]


def __getattr__(name: str):
    if name == "__version__":
        from ._version import __version__
        return __version__
    if name == "load":
        from .loader import load
        return load
    if name == "Corpus":
        from .text.corpus import Corpus
        return Corpus
    if name == "prepare":
        from .text.prepare import prepare
        return prepare
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")
