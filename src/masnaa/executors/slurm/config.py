"""How one site's Slurm is reached and how Masnaa's words map to Slurm's.

Owns ``SlurmSiteConfig``, the ``[site.slurm]`` part of a factory description
(strict: an unknown key is an error, not a silent default).

Terms:
- ``state_dir``: where each attempt's durable records live
  (``<state_dir>/runs/<job>/<attempt>/``: the claim, the batch script, the
  Slurm job id, start time, exit status). The batch script on the compute node
  writes there, so it must be a filesystem shared by the Masnaa host and the
  compute nodes (on a one-machine site, any local directory).
- account / partition mapping: the most specific key wins,
  ``"tenant/project"`` then ``"tenant"`` then the default.
- ``gpu_types``: Slurm GRES type → Masnaa GPU type (``h100`` → ``h100-sxm-80gb``);
  unmapped types keep their Slurm name.
- ``topology``: node → (NVLink domain, leaf switch) from the factory description;
  nodes not listed form a domain of their own under one leaf per site.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_OWNED_LONG = (
    # where: the nodes and GPUs Masnaa placed the job on
    "nodelist", "nodes", "ntasks", "ntasks-per-node", "ntasks-per-gpu", "gres", "gpus",
    "gpus-per-node", "gpus-per-task", "gpus-per-socket", "exclude", "exclusive",
    "overcommit", "distribution", "switches", "array", "het-group", "clusters",
    # when and for how long; whether Slurm requeues it behind Masnaa's back
    "time", "time-min", "begin", "deadline", "dependency", "hold", "signal", "requeue",
    "no-requeue",
    # its name, directory, logs, environment and the batch script itself
    "job-name", "chdir", "output", "error", "input", "open-mode", "export", "export-file",
    "get-user-env", "comment", "wrap", "parsable", "wait", "uid", "gid",
    # set per tenant and project by the site's own options (partition, account)
    "partition", "account",
)
_OWNED_SHORT = {
    "w": "nodelist", "N": "nodes", "n": "ntasks", "G": "gpus", "x": "exclude",
    "O": "overcommit", "m": "distribution", "a": "array", "M": "clusters", "t": "time",
    "b": "begin", "d": "dependency", "H": "hold", "J": "job-name", "D": "chdir",
    "o": "output", "e": "error", "i": "input", "W": "wait", "p": "partition", "A": "account",
}
_FLAGS = set("vQHOWskhV")
"""Short options that take no value, so that a letter after one is another option."""


def _owned_option(arg: str) -> str | None:
    """The option Masnaa owns that ``arg`` sets, read as sbatch reads it: a long option
    by its name or any abbreviation of it (``--nodel``), a short one with its value
    attached or apart (``-t1``, ``-w node``), and flags bundled (``-vH``)."""
    if arg.startswith("--"):
        name = arg[2:].split("=", 1)[0]
        if not name:
            return None
        if name in _OWNED_LONG:
            return "--" + name
        return next(("--" + o for o in _OWNED_LONG if o.startswith(name)), None)
    if arg.startswith("-") and len(arg) > 1:
        for letter in arg[1:]:
            if letter in _OWNED_SHORT:
                return f"-{letter} (--{_OWNED_SHORT[letter]})"
            if letter not in _FLAGS:
                return None  # takes a value: the rest of the word is that value
    return None


class SlurmSiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str = Field(min_length=1)
    state_dir: Path
    partition: str | None = None
    """Default partition; ``None``: Slurm's default partition."""
    partitions: dict[str, str] = Field(default_factory=dict)
    accounts: dict[str, str] = Field(default_factory=dict)
    account: str | None = None
    """Default account; ``None``: the submitting user's default account."""
    gpu_types: dict[str, str] = Field(default_factory=dict)
    topology: dict[str, tuple[str, str]] = Field(default_factory=dict)
    bin_dir: str | None = None
    slurm_conf: str | None = None
    """Path given to the tools as ``SLURM_CONF`` when the site's config is not in /etc/slurm."""
    command_timeout: float = Field(default=15.0, gt=0)
    dispatch_threads: int = Field(default=4, ge=1, le=64)
    time_limit_slack: float = Field(default=60.0, ge=0)
    """Slurm's own ``--time`` is the run's limit + kill grace + this slack, a backstop:
    the batch script enforces the exact limit in seconds."""
    claim_timeout: float = Field(default=60.0, gt=0)
    """A claimed attempt with no Slurm job after this long is lost (its launcher died)."""
    stop_margin: float = Field(default=5.0, ge=0)
    """After a stop's grace plus this, ``scancel`` ends whatever is left."""
    squeue_format: Literal["text", "json"] = "text"
    """How the per-pass ``squeue`` answers: ``text`` (a fixed ``--format``) or ``json``.
    Both are machine-readable; in 22.05 ``--json`` of 10,000 jobs takes ~7 s, text ~0.4 s."""
    view_ttl: float = Field(default=1.0, ge=0)
    """``poll`` of one attempt reuses the last ``squeue`` answer for this long."""
    sbatch_args: tuple[str, ...] = ()
    """Extra options for every submission (e.g. ``--qos=masnaa``)."""

    @field_validator("sbatch_args")
    @classmethod
    def _no_placement_overrides(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arg in value:
            owned = _owned_option(arg)
            if owned is not None:
                raise ValueError(
                    f"sbatch_args may not set {owned} (given as {arg!r}): Masnaa sets where, "
                    "when and for how long a job runs, its requeueing, name, logs and "
                    "environment (partitions and accounts have options of their own, "
                    "partition and account); give site options such as --qos, --mem or "
                    "--constraint"
                )
        return value

    @classmethod
    def from_site_options(
        cls,
        site: str,
        options: Mapping[str, str | int | float | bool],
        *,
        home: Path,
        topology: Mapping[str, tuple[str, str]] | None = None,
    ) -> SlurmSiteConfig:
        """From a factory site's flat ``options`` table.

        Scalar keys are this model's fields (``sbatch_args`` as one string,
        split like a shell would); tables are spelled with dotted keys:
        ``"account.um6p/vision" = "um6p-vis"``, ``"partition.um6p" = "gpu"``,
        ``"gpu_type.h100" = "h100-80gb"``. ``state_dir`` defaults to
        ``<home>/slurm/<site>`` (fine on one machine; a real site names a
        directory its compute nodes share).
        """
        fields: dict[str, object] = {"site": site, "state_dir": home / "slurm" / site}
        tables: dict[str, dict[str, str]] = {"accounts": {}, "partitions": {}, "gpu_types": {}}
        prefixes = {"account.": "accounts", "partition.": "partitions", "gpu_type.": "gpu_types"}
        for key, value in options.items():
            prefix = next((p for p in prefixes if key.startswith(p)), None)
            if prefix is not None:
                tables[prefixes[prefix]][key[len(prefix) :]] = str(value)
            elif key == "sbatch_args":
                fields[key] = tuple(shlex.split(str(value)))
            elif key in cls.model_fields and key not in ("site", *tables, "topology"):
                fields[key] = value
            else:
                known = sorted(
                    k for k in cls.model_fields if k not in ("site", *tables, "topology")
                )
                raise ValueError(
                    f"site {site}: unknown Slurm option {key!r}; use one of {', '.join(known)} "
                    "or account.<tenant[/project]>, partition.<tenant[/project]>, "
                    "gpu_type.<slurm gres type>"
                )
        return cls.model_validate({**fields, **tables, "topology": dict(topology or {})})

    def account_for(self, tenant: str | None, project: str | None) -> str | None:
        return _most_specific(self.accounts, tenant, project) or self.account

    def partition_for(self, tenant: str | None, project: str | None) -> str | None:
        return _most_specific(self.partitions, tenant, project) or self.partition

    def masnaa_gpu_type(self, slurm_type: str) -> str:
        return self.gpu_types.get(slurm_type, slurm_type)

    def slurm_gpu_type(self, masnaa_type: str) -> str:
        for slurm, ours in self.gpu_types.items():
            if ours == masnaa_type:
                return slurm
        return masnaa_type

    def domains_for(self, node: str) -> tuple[str, str, str]:
        nvl, leaf = self.topology.get(node, (f"{self.site}/{node}", f"{self.site}/leaf"))
        return (nvl, leaf, self.site)


def _most_specific(table: dict[str, str], tenant: str | None, project: str | None) -> str | None:
    if tenant is None:
        return None
    if project is not None and f"{tenant}/{project}" in table:
        return table[f"{tenant}/{project}"]
    return table.get(tenant)
