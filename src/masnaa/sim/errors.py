"""Errors of the twin: each carries a machine-readable code and a sentence.

``TraceError`` is bad input (a trace line, a trace name, a slice); its
``line`` is the 1-based line number in the file when one is to blame.
``InvariantViolation`` means the scheduler or the engine broke a rule that
must always hold (capacity, a GPU held twice, a split gang): a bug, never
bad input, so a run stops on it.
"""

from __future__ import annotations


class SimError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class TraceError(SimError):
    def __init__(self, code: str, message: str, line: int | None = None) -> None:
        super().__init__(code, f"line {line}: {message}" if line is not None else message)
        self.line = line


class InvariantViolation(SimError):
    pass
