"""The ``slurm`` executor: Masnaa's jobs handed to a site's Slurm.

Modules: ``config`` (the site's Slurm section of a factory description),
``commands`` (the CLI transport and its two errors), ``parse`` (squeue/sinfo
JSON and names, no IO), ``script`` (batch script and sbatch options, no IO),
``records`` (each attempt's durable directory), ``executor`` (the contract).
"""

from masnaa.executors.slurm.commands import SiteUnreachable, SlurmCommands, SlurmRejected
from masnaa.executors.slurm.config import SlurmSiteConfig
from masnaa.executors.slurm.executor import SlurmExecutor, SlurmView
from masnaa.executors.slurm.parse import SlurmJob, SlurmNode

__all__ = [
    "SiteUnreachable",
    "SlurmCommands",
    "SlurmExecutor",
    "SlurmJob",
    "SlurmNode",
    "SlurmRejected",
    "SlurmSiteConfig",
    "SlurmView",
]
