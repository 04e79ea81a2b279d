"""The executor contract: how the service hands an admitted job to something that runs it.

Executors are the only code that touches processes, Slurm or GPUs. The
control loop chooses *what* runs *where* (through the scheduler core) and
writes that to the store first; an executor only *does* it. Every executor
(``local`` here, ``slurm`` per production site) honours the same contract:

Identity
    A run is named by ``(job_id, attempt)``. The attempt number grows each
    time the store sends a job back to the queue (preemption, lost run), so
    two runs of one job never share an identity.

Idempotency
    ``start(spec)`` is idempotent per ``(job_id, attempt)``: calling it again
    for an attempt that was already started (by this object, by a previous
    process that was killed, or that has long finished) does nothing and
    never launches a second copy. ``stop`` is idempotent too. This is what
    lets the control loop write "admitted" to the store, then call
    ``start``, then write "running", and be killed -9 between any two steps.

Observation
    ``poll(job_id, attempt)`` says what is true *now*, from the executor's
    own durable records, never from the caller's memory:

    - ``running``: the attempt's supervisor is alive;
    - ``exited``: it ended and its real exit status was recorded durably
      (``exit_code``; ``signal`` when a signal ended it; ``reason`` says
      whether it exited by itself, was stopped, or hit its time limit);
    - ``lost``: it was started (or its start was claimed) but nothing
      supervises it any more and no exit status was recorded, e.g. the
      supervisor was SIGKILLed, the node rebooted, or the launching process
      died between claiming the attempt and spawning it. Whatever processes
      remain of a lost attempt are killed by ``poll``; the caller requeues
      the job under a new attempt number.
    - ``absent``: nothing was ever claimed for this attempt.

Stopping (preemption, cancellation, time limit)
    The job's processes get SIGTERM (every one of them: its process group,
    and what it detached from it, for ``local`` see ``proctrack``), then
    ``grace_seconds`` to checkpoint and exit, then SIGKILL. The time limit
    is enforced by the executor in the same way, without the control loop
    being alive; such a run ends with ``reason="time-limit"``.

Speed
    ``start``, ``stop`` and ``poll`` return quickly (milliseconds for
    ``local``; one round trip for remote engines): they never wait for a job
    to end or for a grace period to elapse. Waiting is the control loop's
    business, through later polls.

Accounts
    ``LaunchSpec.run_as`` names the Unix account the job's processes run as
    (the tenant's, from the factory description). ``local`` honours it when
    it runs as root and refuses the launch (``LaunchRejected``) when the
    account does not exist or is root; otherwise the job runs as the
    executor's own user. ``slurm`` submits as the control plane's user
    whatever it says: on a Slurm site, isolation is Slurm's own.

Errors
    ``ExecutorUnavailable`` means "try again later" (the engine is
    unreachable); the job stays where it is in the store. ``LaunchRejected``
    means the spec itself can never run here (bad working directory, command
    not found is *not* this: that is an exit code 127, recorded like any
    other exit); the caller fails the job with the message.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from masnaa.domain.reasons import Phrase

ObservedState = Literal["running", "exited", "lost", "absent"]
EndReason = Literal["exited", "stopped", "time-limit", "launch-failed", "cancelled-outside"]
"""``cancelled-outside``: the site's own scheduler cancelled it (an administrator's
``scancel``), which Masnaa did not ask for: the job ends ``cancelled``."""


def script_argv(script: str, path: str) -> tuple[str, ...]:
    """How to run a submitted script saved at ``path``: by the interpreter its ``#!``
    line names, as ``sbatch`` and the kernel would (``#!/bin/bash``, ``#!/usr/bin/env
    python3``), else by ``/bin/sh``. Read here rather than by making the file
    executable, so that a script on a filesystem mounted ``noexec`` still runs."""
    first = script.split("\n", 1)[0]
    if first.startswith("#!"):
        # The kernel passes everything after the interpreter as one argument.
        interpreter, _, rest = first[2:].strip().partition(" ")
        if interpreter:
            return (interpreter, *([rest.strip()] if rest.strip() else []), path)
    return ("/bin/sh", path)


class ExecutorError(Exception):
    """Base class of the errors an executor raises."""


class ExecutorUnavailable(ExecutorError):
    """The engine cannot be reached now; retry on a later pass."""


class LaunchRejected(ExecutorError):
    """The spec can never run on this executor; fail the job with this message."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an executor can do, declared instead of guessed from its class."""

    supports_adoption: bool
    """A new executor object (e.g. after a restart) finds and follows runs started earlier."""
    enforces_time_limit: bool
    """The executor itself stops a run at its time limit (no control loop needed)."""
    pins_gpus: bool
    """The run sees exactly the placed GPUs (``CUDA_VISIBLE_DEVICES`` or equivalent)."""
    multi_node: bool
    """A placement may span several nodes."""
    queues: bool = False
    """A started attempt may wait in the engine's own queue (``running`` with
    ``started_at=None``): the run holds its GPUs, and is charged, only from the first
    observed ``started_at``; ``Observed.message`` says why it waits."""


@dataclass(frozen=True, slots=True)
class NodeGpus:
    """The GPUs a run holds on one node: NVML indices, and their UUIDs where known."""

    node: str
    indices: tuple[int, ...]
    uuids: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Everything an executor needs to run one attempt of a job.

    Either ``argv`` (the command; no shell unless the user asked for one,
    e.g. ``("sh", "-c", "...")``) or ``script`` (a body run by ``/bin/sh``
    from a file, so its size is not bound by the kernel's argument limit).
    ``env`` is added to the executor's minimal
    base environment. ``workdir`` ``None`` means the attempt's own
    directory. ``time_limit`` is in seconds from the start of the run;
    ``kill_grace`` is the SIGTERM→SIGKILL window used when the time limit is
    hit. ``stdout``/``stderr`` ``None`` means the executor's default place.
    """

    job_id: str
    attempt: int
    argv: tuple[str, ...]
    placement: tuple[NodeGpus, ...]
    time_limit: float
    script: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    kill_grace: float = 30.0
    tenant: str | None = None
    """The owning tenant's name (engines map it to their accounts or partitions)."""
    project: str | None = None
    """The project's name within its tenant."""
    run_as: str | None = None
    """The Unix account the job runs as (see "Accounts"); None: the executor's own user."""

    def __post_init__(self) -> None:
        if bool(self.argv) == (self.script is not None):
            raise LaunchRejected(
                f"job {self.job_id}: give either a command (argv) or a script, not "
                + ("both" if self.argv else "neither")
            )
        if self.attempt < 1:
            raise LaunchRejected(f"job {self.job_id}: attempt must be ≥ 1, got {self.attempt}")
        if self.time_limit <= 0:
            raise LaunchRejected(
                f"job {self.job_id}: time limit must be positive, got {self.time_limit}"
            )


@dataclass(frozen=True, slots=True)
class Observed:
    """What the executor knows about one attempt right now (see the module docstring)."""

    state: ObservedState
    exit_code: int | None = None
    signal: int | None = None
    reason: EndReason | None = None
    stop_reason: str | None = None
    """The caller's words passed to ``stop`` (e.g. ``preempted``, ``cancelled``)."""
    started_at: float | None = None
    ended_at: float | None = None
    message: str = ""
    why: Phrase | None = None
    """``message`` as a phrase (``domain.reasons``), where the executor can say it as one:
    the portal then shows it in the reader's language."""

    @property
    def done(self) -> bool:
        return self.state in ("exited", "lost")


class Executor(abc.ABC):
    """Runs attempts of jobs. See the module docstring for the full contract."""

    name: str
    capabilities: Capabilities

    @abc.abstractmethod
    def start(self, spec: LaunchSpec) -> None:
        """Launch the attempt unless it was already claimed; idempotent, returns at once."""

    @abc.abstractmethod
    def stop(self, job_id: str, attempt: int, grace_seconds: float, reason: str) -> None:
        """SIGTERM now, SIGKILL after ``grace_seconds``; idempotent, returns at once.

        Stopping an attempt that already ended, or was never started, does nothing.
        """

    @abc.abstractmethod
    def poll(self, job_id: str, attempt: int) -> Observed:
        """The attempt's current state from the executor's durable records."""

    def log_paths(self, job_id: str, attempt: int) -> tuple[str, str] | None:
        """Where the attempt's stdout and stderr land (readable by the API), if known."""
        return None

    def news(self) -> bool:
        """A cheap hint that some run may have ended since it was last polled.

        The control loop passes at once when it is true; without the hint it
        still polls every run each pass, so ``False`` is always safe.
        """
        return False

    def start_many(self, specs: Sequence[LaunchSpec]) -> list[Exception | None]:
        """Start several attempts (engines that can batch or parallelise override this).

        One result per spec, in order: ``None`` (started, or already started) or
        the ``ExecutorError`` its start raised. Same contract as ``start`` each.
        """
        out: list[Exception | None] = []
        for spec in specs:
            try:
                self.start(spec)
            except ExecutorError as exc:
                out.append(exc)
            except OSError as exc:
                # The machine failed this one launch (a directory it cannot write, a full
                # disk): the job waits for a later pass, and the others start meanwhile.
                out.append(ExecutorUnavailable(f"cannot start {spec.job_id} here now: {exc}"))
            else:
                out.append(None)
        return out

    def unavailable_nodes(self) -> dict[str, str] | None:
        """The engine's nodes that must take no new work now (name → why), read once a pass.

        ``None``: this executor does not report node health (the store's node
        states are all there is). Raises ``ExecutorUnavailable`` when the engine
        does not answer; the loop then marks the site unreachable.
        """
        return None

    def poll_many(self, runs: list[tuple[str, int]]) -> dict[tuple[str, int], Observed]:
        """Poll several attempts; engines with a bulk query override this."""
        return {run: self.poll(*run) for run in runs}

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release resources held by this object; runs keep running."""
