"""The one error type of crossd: a problem with what the caller gave (data, an output location, a checkpoint, a
setting), as opposed to a bug in crossd.

Every :class:`CrossdError` carries ``field``, the library's own parameter name it concerns (``"batch_size"``,
``"data_path"``), or ``None``. The library words its messages with that name; the command line maps it to the
flag the user typed, once, from its parser (:func:`crossd.cli.main`), prints one line and exits 2. Any other
exception reaching the command line is a bug and is shown with its traceback.

``str(error)`` is ``"<field> <message>"`` (``"batch_size must be positive, got 0"``, ``"data_path /x: no such
file or folder"``), so a library user reads the parameter name where a command-line user reads the flag.
``CrossdError`` subclasses ``ValueError``: code that caught ``ValueError`` for bad input keeps working.

A message whose hint names another parameter (``"...; pass allow_changed to discard them"``) lists it in
``mentions``: the command line shows that name as its flag too (``"pass --allow-changed to discard them"``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["CheckpointError", "CrossdError", "DataError", "OutputError", "SettingsError", "one_line"]


class CrossdError(ValueError):
    """A problem with the caller's input, printed by the command line as one line (exit code 2).

    Args:
        message: what is wrong, in one line, worded to follow ``field`` when one is given.
        field: the parameter it concerns (a library name such as ``"output_dir"``; the CLI shows its flag).
        mentions: other parameter names the message itself names, as whole words (the CLI shows their flags).
    """

    def __init__(self, message: str, field: str | None = None, mentions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.mentions = tuple(mentions)

    def __str__(self) -> str:
        return f"{self.field} {self.message}" if self.field else self.message

    def __reduce__(self):  # DataLoader workers pickle exceptions to re-raise them in the main process
        return (type(self), (self.message, self.field, self.mentions))


class DataError(CrossdError):
    """Bad input data: a missing or unreadable dataset, non-finite values, labels out of range, a layout that
    cannot be read. The message names the source (a file, or ``file: key``) and the first offending sample."""


class OutputError(CrossdError):
    """An output location that cannot be written: the path and the reason."""


class CheckpointError(CrossdError):
    """A checkpoint that cannot be used: missing, corrupt, refused (unsafe pickle), non-finite, or of another
    architecture or class count."""


class SettingsError(CrossdError):
    """Settings that cannot work together or are out of range (``batch_size`` 0, an unknown init name, a resume
    with other settings)."""


def one_line(exc: BaseException) -> str:
    """The error's message; for one re-raised from a DataLoader worker (the worker's traceback in the message),
    its original last line without the exception-type prefix."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    prefix = re.match(r"[\w.]+: ", last)  # the exception type, as the worker's traceback names it
    return last[prefix.end() :] if prefix else last
