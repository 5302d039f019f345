"""Typed exceptions raised by the library. Only the CLI turns them into exit codes."""

from __future__ import annotations


class ClvtierError(Exception):
    """Base class for every error clvtier raises on purpose."""


class InputError(ClvtierError, ValueError):
    """A user-supplied input (file, frame, option) cannot be used.

    The message is one line naming the source and the problem, so the CLI can print it as is.

    Parameters
    ----------
    source : str
        The file path (or ``"<DataFrame>"``) the problem is in.
    problem : str
        What is wrong, naming the column and rows where that applies.
    """

    def __init__(self, source: str, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class TrackingError(ClvtierError):
    """The MLflow tracking store or registry cannot be used (unreachable, locked, refused)."""


class MissingColumnError(InputError):
    """A required column is absent from the input."""

    def __init__(self, source: str, column: str, found: list[str], mapped_from: str | None = None):
        self.column = column
        self.found = list(found)
        what = f"column '{mapped_from}' (mapped to {column})" if mapped_from else f"column '{column}'"
        shown = ", ".join(repr(c) for c in self.found) or "none"
        super().__init__(source, f"required {what} is missing; columns found: {shown}")


class EmptyInputError(InputError):
    """The input holds no data rows, or no row survived validation."""
