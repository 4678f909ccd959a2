"""Exceptions that rnnkit raises for problems a user can fix.

The library raises them and never prints or exits; the cli package's entry point turns every RnnkitError into one
`error: ...` line on stderr and exit code 2.
"""


class RnnkitError(Exception):
    """Bad input or usage: the message says what, where, and what to do."""


class InputError(RnnkitError):
    """A text or data file that cannot be read as asked (missing, not UTF-8, empty, ...)."""


class ModelFileError(RnnkitError):
    """A model file that is not a model, is truncated or corrupted, or is of another version."""


class FormatError(RnnkitError):
    """A file in a text format (ARPA, N-best, vocabulary) with a malformed line."""


class OutputError(RnnkitError):
    """An output that cannot or must not be written: it would replace an input, the disk is
    full or read-only, another run holds its lock."""


class TrainingError(RnnkitError):
    """Training cannot go on (diverged loss, invalid discounts, empty split, ...)."""


def missing_build(e: ImportError) -> RnnkitError:
    """The error for a compiled extension that cannot be imported: how to build it."""
    return RnnkitError(
        f"rnnkit's compiled extension is missing ({e}); build it with `pip install .` "
        f"(or `pip install -e .` in a source checkout), which needs a C compiler")
