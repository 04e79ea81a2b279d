"""Errors of the twin: each carries a machine-readable code and a sentence.

``TraceError`` is bad input (a trace line, a trace name, a slice); its
``line`` is the 1-based line number in the file when one is to blame.
``InvariantViolation`` means the scheduler or the engine broke a rule that
must always hold (capacity, a GPU held twice, a split gang): a bug, never
bad input, so a run stops on it.
"""

from __future__ import annotations

from typing import Any


class SimError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        # An error raised in a replay's worker process reaches the parent pickled. The
        # default rebuilds an exception from ``args`` alone (here the message), which
        # neither these constructors nor the code and line would survive.
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[SimError], args: tuple[Any, ...], state: dict[str, Any]) -> SimError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class TraceError(SimError):
    def __init__(self, code: str, message: str, line: int | None = None) -> None:
        super().__init__(code, f"line {line}: {message}" if line is not None else message)
        self.line = line
        self.detail = message
        """The sentence without its line number (a skipped line's reason, kept beside it)."""


class InvariantViolation(SimError):
    pass
