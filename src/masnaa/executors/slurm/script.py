"""The batch script and the ``sbatch`` options of one attempt (pure: text in, text out).

Owns what runs on the compute node around the user's command, and how a
``LaunchSpec`` becomes ``sbatch`` options.

The batch script is a small supervisor written in POSIX shell + bash:

- it exports the job's environment (in the script, not through ``--export``,
  whose comma-separated syntax cannot carry values with commas), then what the job
  cannot override: Masnaa's ``MASNAA_JOB_ID``/``MASNAA_ATTEMPT``/``MASNAA_NODELIST``/
  ``MASNAA_GPUS``, ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and ``CUDA_VISIBLE_DEVICES``
  from the GPUs Slurm granted (Slurm sets it for GPU GRES; ``SLURM_JOB_GPUS``
  otherwise), as the local executor does;
- it records durably, in the attempt's directory: ``slurm_job_id``,
  ``started_at``, and at the end ``exit`` = ``<status> <reason> <ended_at>``.
  Slurm's own accounting is not trusted for the exit status (Debian 22.05's
  ``sacct --json`` reported 0 for a job that exited 3);
- it runs the command in its own session, so signals reach the whole process
  tree: on SIGTERM (``scancel --batch --signal=TERM``, a stop) it forwards one
  TERM, then SIGKILLs after the grace written in the ``stop`` file; at the time
  limit (to the second, Slurm's ``--time`` is in minutes) it does the same with
  the spec's ``kill_grace`` and records ``time-limit``.

Status words: ``<status>`` is the shell's ``$?`` (``128+n`` when signal ``n``
ended the command); ``<reason>`` is one of ``exited``, ``stopped``,
``time-limit``, ``launch-failed``.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence

from masnaa.executors.base import LaunchRejected, LaunchSpec, script_argv
from masnaa.executors.slurm.config import SlurmSiteConfig
from masnaa.executors.slurm.parse import job_comment, job_name

COMMAND_FILE = "command.sh"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _seconds(value: float) -> str:
    return f"{max(0.0, value):.3f}".rstrip("0").rstrip(".") or "0"


def render_script(spec: LaunchSpec, run_dir: str, workdir: str) -> str:
    for name in spec.env:
        if not _ENV_NAME.match(name):
            raise LaunchRejected(
                f"job {spec.job_id}: environment variable name {name!r} is not valid; use "
                "letters, digits and _ (not starting with a digit)"
            )
    q = shlex.quote
    exports = "\n".join(f"export {k}={q(v)}" for k, v in sorted(spec.env.items()))
    # A script body travels as a file beside the batch script (``COMMAND_FILE``).
    command = spec.argv or script_argv(spec.script or "", f"{run_dir}/{COMMAND_FILE}")
    argv = " ".join(q(a) for a in command)
    nodelist = ",".join(s.node for s in spec.placement)
    gpus = sum(len(s.indices) for s in spec.placement)
    return f"""#!/bin/bash
# Masnaa job {spec.job_id}, attempt {spec.attempt}: written by Masnaa's slurm executor.
d={q(run_dir)}
_masnaa_put() {{ printf '%s\\n' "$2" > "$d/.$1.$$" && mv -f "$d/.$1.$$" "$d/$1"; }}
_masnaa_now() {{ date +%s.%N; }}
export PATH="${{PATH:-{_DEFAULT_PATH}}}"
# The GPUs Slurm granted, read before the job's own environment, which must not widen
# them on a node without device cgroups.
_masnaa_gpus="${{CUDA_VISIBLE_DEVICES:-${{SLURM_JOB_GPUS:-}}}}"
{exports}
export MASNAA_JOB_ID={q(spec.job_id)} MASNAA_ATTEMPT={spec.attempt} MASNAA_RUN_DIR="$d"
export MASNAA_NODELIST={q(nodelist)} MASNAA_GPUS={gpus} CUDA_DEVICE_ORDER=PCI_BUS_ID
if [ -n "$_masnaa_gpus" ]; then
    export CUDA_VISIBLE_DEVICES="$_masnaa_gpus"
else
    unset CUDA_VISIBLE_DEVICES
fi
child=
helpers=
reason=exited
_masnaa_later() {{  # after $1 seconds: optionally mark $3, then signal $2 to the command
    sleep "$1" & local s=$!
    trap 'kill "$s" 2>/dev/null; exit 0' TERM
    # A timer whose sleep was killed did not run out: scancel signals every process of
    # the job, and the sleep may die before this shell's own trap runs.
    wait "$s" || exit 0
    [ -e "$d/exit" ] && exit 0
    [ -n "${{3:-}}" ] && : > "$d/$3"
    kill "-$2" -- "-$child" 2>/dev/null
    exit 0
}}
_masnaa_stop() {{
    [ "$reason" = exited ] || return 0
    reason=stopped
    grace={_seconds(spec.kill_grace)}
    [ -r "$d/stop" ] && read -r grace _ < "$d/stop"
    [ -n "$child" ] && kill -TERM -- "-$child" 2>/dev/null
    _masnaa_later "$grace" KILL &
    helpers="$helpers $!"
}}
trap _masnaa_stop TERM INT
_masnaa_put slurm_job_id "${{SLURM_JOB_ID:-}}"
_masnaa_put nodes "${{SLURM_JOB_NODELIST:-}}"
_masnaa_put started_at "$(_masnaa_now)"
if ! cd {q(workdir)} 2>/dev/null; then
    echo "masnaa: working directory {workdir} does not exist on $(hostname)" >&2
    _masnaa_put exit "1 launch-failed $(_masnaa_now)"
    exit 1
fi
if [ "$reason" != exited ]; then  # stopped before the command began
    _masnaa_put exit "143 stopped $(_masnaa_now)"
    exit 143
fi
setsid {argv} </dev/null &
child=$!
_masnaa_later {_seconds(spec.time_limit)} TERM timed_out &
helpers=$!
_masnaa_later {_seconds(spec.time_limit + spec.kill_grace)} KILL &
helpers="$helpers $!"
while kill -0 "$child" 2>/dev/null; do wait "$child"; done
wait "$child"
rc=$?
[ -e "$d/timed_out" ] && [ "$reason" = exited ] && reason=time-limit
_masnaa_put exit "$rc $reason $(_masnaa_now)"
kill $helpers 2>/dev/null
exit "$rc"
"""


def sbatch_options(
    spec: LaunchSpec,
    config: SlurmSiteConfig,
    *,
    run_dir: str,
    tenant: str | None = None,
    project: str | None = None,
    gpu_types: dict[str, str] | None = None,
) -> list[str]:
    """``sbatch`` options pinning the placement Masnaa chose.

    Every node of the placement is named in ``--nodelist`` and the job asks for
    exactly that many nodes; GPUs go per node (``--gres=gpu[:type]:n``) when
    every slice has the same count, else as a total (``--gpus``) that Slurm
    spreads over the named nodes. ``gpu_types`` (node → Slurm GRES type, from
    inventory) types the request when all nodes share a type.
    """
    nodes = [s.node for s in spec.placement]
    if not nodes:
        raise LaunchRejected(f"job {spec.job_id}: the placement names no node")
    if len(set(nodes)) != len(nodes):
        raise LaunchRejected(f"job {spec.job_id}: the placement names a node twice: {nodes}")
    counts = {len(s.indices) for s in spec.placement}
    minutes = math.ceil((spec.time_limit + spec.kill_grace + config.time_limit_slack) / 60.0)
    args = [
        f"--job-name={job_name(spec.job_id, spec.attempt)}",
        f"--comment={job_comment(spec.job_id, spec.attempt)}",
        f"--nodelist={','.join(nodes)}",
        f"--nodes={len(nodes)}",
        "--ntasks-per-node=1",
        f"--time={max(1, minutes)}",
        f"--chdir={run_dir}",
        f"--output={spec.stdout or run_dir + '/stdout'}",
        f"--error={spec.stderr or run_dir + '/stderr'}",
        "--export=NONE",
        "--no-requeue",  # requeueing is Masnaa's decision, under a new attempt number
        "--open-mode=append",
    ]
    types = {(gpu_types or {}).get(n) for n in nodes}
    typed = next(iter(types)) if len(types) == 1 and None not in types else None
    if len(counts) == 1:
        per_node = counts.pop()
        if per_node > 0:
            args.append(f"--gres=gpu:{typed}:{per_node}" if typed else f"--gres=gpu:{per_node}")
    else:
        total = sum(len(s.indices) for s in spec.placement)
        args.append(f"--gpus={typed}:{total}" if typed else f"--gpus={total}")
    partition = config.partition_for(tenant, project)
    if partition:
        args.append(f"--partition={partition}")
    account = config.account_for(tenant, project)
    if account:
        args.append(f"--account={account}")
    args.extend(config.sbatch_args)
    return args


def describe(args: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)
