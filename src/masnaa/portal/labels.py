"""Words the portal shows for the service's machine codes, in the user's language.

Job states, wait codes (``masnaa.scheduler.decision.WaitCode``), node states
and the codes of submit errors each map to an English source message marked
for extraction with ``N_`` (the catalog translates it at render time). A code
with no entry is shown as the service wrote it, never dropped.

Submit errors: the service's sentence is English; the portal shows its own
translated sentence per ``code`` with the values a user needs to fix the field
(the allowed names, the largest gang), so errors read in the user's language.
"""

from __future__ import annotations


def N_(message: str) -> str:
    """Mark ``message`` for extraction; it is translated where it is shown."""
    return message


JOB_STATES = {
    "pending": N_("waiting"),
    "admitted": N_("starting"),
    "running": N_("running"),
    "succeeded": N_("succeeded"),
    "failed": N_("failed"),
    "cancelled": N_("cancelled"),
}

NODE_STATES = {
    "up": N_("up"),
    "drained": N_("drained"),
    "down": N_("down"),
}

WAIT_CODES = {
    "no-capacity": N_("Not enough free GPUs of an acceptable type right now."),
    "reserved": N_("Next in line: GPUs are reserved for it."),
    "backfill-would-delay": N_("It would fit now, but would delay a job that is next in line."),
    "quota": N_("Starting it would exceed your tenant's quota."),
    "fair-share": N_("Other tenants are further below their fair share."),
    "priority": N_("Jobs of higher priority come first."),
    "waiting-for-preemption": N_("Other jobs are being stopped to make room for it."),
    "no-eligible-site": N_("No site it may run at has an acceptable GPU type."),
    "allocation-exhausted": N_("The project's allocation cannot cover it."),
    "nodes-unavailable": N_("Enough GPUs exist, but some nodes are drained or down."),
    "too-large": N_("It asks for more GPUs than any eligible site has."),
    "not-considered": N_("The scheduler has not reached it yet in this pass."),
}

SUBMIT_ERRORS = {
    "command-or-script": N_("Give the command to run, for example: python train.py"),
    "invalid-command": N_("This command cannot be read: close every quote."),
    "invalid-time-limit": N_("Give a time limit between 1 minute and 366 days."),
    "unknown-priority-class": N_("Choose one of: %(choices)s."),
    "priority-class-not-allowed": N_(
        "This priority class is not open to the project's tenant: choose another."
    ),
    "unknown-site": N_("Choose one of: %(choices)s."),
    "unknown-gpu-type": N_("Choose one of: %(choices)s."),
    "too-many-gpus": N_("Too many GPUs: at most %(most)s GPUs fit at one site. Ask for fewer."),
    "too-many-gpus-per-task": N_(
        "Too many GPUs per task: a task runs on one node, and the largest has %(most)s GPUs. "
        "Ask for at most that many per task."
    ),
    "project-required": N_("Choose the project to charge."),
    "unknown-project": N_("Choose one of your projects."),
    "ambiguous-project": N_("Write the project as tenant/project."),
    "not-a-number": N_("Enter a whole number of at least 1."),
    "too-long": N_("This is too long."),
    "no-gpus-declared": N_("This factory declares no GPUs yet: ask an operator."),
}

FIELD_LABELS = {
    "name": N_("Name"),
    "project": N_("Project"),
    "command": N_("Command"),
    "tasks": N_("Nodes (tasks)"),
    "gpus_per_task": N_("GPUs per task"),
    "gpu_type": N_("GPU type"),
    "time_limit": N_("Time limit (minutes)"),
    "priority_class": N_("Priority"),
    "site": N_("Site"),
}
