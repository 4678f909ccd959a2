"""rnnkit: language modelling on the CPU -- n-gram and recurrent models, sampling, scoring and
N-best rescoring, in one package."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rnnkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"


def kernels():
    """The compiled module rnnkit._kernels, or an error that says how to build it."""
    try:
        from . import _kernels
    except ImportError as e:
        from .errors import RnnkitError

        raise RnnkitError(
            f"rnnkit's compiled extension is missing ({e}); build it with `pip install .` "
            f"(or `pip install -e .` in a source checkout), which needs a C compiler") from None
    return _kernels


from .prepare import Corpus, prepare  # noqa: E402  (the function shadows the module name)


def load(path, **options):
    """Load any language model: an rnnkit model file or an ARPA file (plain or gzip)."""
    from .modelfile import load_model

    return load_model(path, **options)
