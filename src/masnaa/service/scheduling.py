"""The scheduler a live control loop runs: its policy and knobs, checked before it starts.

The twin tries a policy and its knobs on a trace (``masnaa sim --knob``); the live
loop takes the same names and values (``masnaa up --knob``, ``masnaa loop --knob``),
so what was proven in the twin is what runs. One difference: an oracle policy
(``srtf-oracle``) reads each job's true runtime, which exists only in a replay, so a
live loop refuses it. As in the twin, only the knobs of ``config.TUNABLE`` may be
set: not ``explain_waits`` or ``estimate_depth`` (users read every wait reason and
start estimate the live loop writes), nor ``las_thresholds`` (they must equal the
pending queue's).

Every refusal is a ``SchedulingError`` with a machine-readable code and a sentence
saying what would be right, raised before the loop touches the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from masnaa.scheduler import POLICIES, SchedulerConfig
from masnaa.scheduler.config import knobs as parse

Knob = tuple[str, float | int | bool]


class SchedulingError(ValueError):
    """A policy or knob the live loop cannot run, with a machine-readable ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def live_policies() -> list[str]:
    """The policies a live loop may run: every registered one but the oracles."""
    return sorted(name for name, policy in POLICIES.items() if not policy.oracle)


def parse_knobs(texts: Iterable[str]) -> tuple[Knob, ...]:
    """``NAME=VALUE`` texts → typed knobs (``scheduler.config.knobs``)."""
    try:
        return parse(texts)
    except ValueError as e:
        raise SchedulingError("bad-knob", str(e)) from None


def live_scheduler(policy: str, knobs: Sequence[Knob] = ()) -> SchedulerConfig:
    """The ``SchedulerConfig`` of a live loop (see the module docstring for the refusals)."""
    chosen = POLICIES.get(policy)
    if chosen is None:
        raise SchedulingError(
            "unknown-policy",
            f"there is no scheduling policy {policy!r}; choose one of: "
            + ", ".join(live_policies()),
        )
    if chosen.oracle:
        raise SchedulingError(
            "oracle-policy",
            f"{policy} is an oracle: it reads each job's true runtime, which only a replay "
            "knows; replay it with `masnaa sim`, and run one of these here: "
            + ", ".join(live_policies()),
        )
    try:
        given: dict[str, Any] = dict(knobs)  # each typed like its default by ``knob``
        return SchedulerConfig(policy=policy, **given)
    except ValueError as e:
        raise SchedulingError("bad-knob", str(e)) from None


def describe(config: SchedulerConfig, knobs: Sequence[Knob]) -> str:
    """One line for a banner or a log: the policy and the knobs set away from their defaults."""
    if not knobs:
        return config.policy
    return f"{config.policy} ({', '.join(f'{name}={value}' for name, value in knobs)})"
