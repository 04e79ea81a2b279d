"""The site's Slurm section: strict keys, account/partition mapping, sbatch options."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from masnaa.executors.base import LaunchRejected, LaunchSpec, NodeGpus
from masnaa.executors.slurm import SlurmSiteConfig
from masnaa.executors.slurm.script import sbatch_options


def config(**kw: object) -> SlurmSiteConfig:
    return SlurmSiteConfig(site="ma-1", state_dir=Path("/tmp/x"), **kw)  # type: ignore[arg-type]


def spec(*slices: tuple[str, int], time_limit: float = 3600, **kw: object) -> LaunchSpec:
    placement = tuple(NodeGpus(node, tuple(range(n))) for node, n in slices)
    return LaunchSpec(
        job_id="j1", attempt=2, argv=("true",), placement=placement, time_limit=time_limit, **kw
    )  # type: ignore[arg-type]


def test_unknown_keys_are_an_error_not_a_silent_default() -> None:
    with pytest.raises(ValidationError, match="partiton"):
        SlurmSiteConfig(site="ma-1", state_dir=Path("/tmp/x"), partiton="gpu")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("arg", "owned"),
    [
        ("--nodelist=other", "--nodelist"),
        ("--nodel=other", "--nodelist"),  # sbatch takes any abbreviation of a long option
        ("-wvm", "-w (--nodelist)"),  # short, the value attached
        ("-t1", "-t (--time)"),
        ("--requeue", "--requeue"),
        ("--no-requeue", "--no-requeue"),
        ("-N2", "-N (--nodes)"),
        ("--nodes=2", "--nodes"),
        ("-G8", "-G (--gpus)"),
        ("--gpus-per-node=8", "--gpus-per-node"),
        ("--ntasks-per-node=4", "--ntasks-per-node"),
        ("--open-mode=truncate", "--open-mode"),
        ("--array=1-3", "--array"),
        ("--wrap=x", "--wrap"),
        ("-vH", "-H (--hold)"),  # a flag bundled after another
        ("-p", "-p (--partition)"),  # the site's partition options set it
        ("--account=lab", "--account"),
    ],
)
def test_sbatch_args_may_not_override_what_masnaa_sets(arg: str, owned: str) -> None:
    with pytest.raises(ValidationError) as e:
        config(sbatch_args=(arg,))
    assert f"may not set {owned} (given as {arg!r})" in str(e.value)


@pytest.mark.parametrize(
    "args",
    [("--qos=masnaa",), ("--mem=64G",), ("-Ca100",), ("--constraint", "a100"),
     ("--gres-flags=enforce-binding",), ("--mail-type=NONE",), ("--nice=10",)],
)
def test_site_options_that_leave_the_job_alone_are_kept(args: tuple[str, ...]) -> None:
    assert config(sbatch_args=args).sbatch_args == args


@pytest.mark.parametrize(
    ("tenant", "project", "account", "partition"),
    [
        ("um6p", "vision", "um6p-vision", "big"),
        ("um6p", "nlp", "um6p", "gpu"),
        ("uct", "x", "guests", "gpu"),
        (None, None, "guests", "gpu"),
    ],
)
def test_account_and_partition_follow_the_most_specific_rule(
    tenant: str | None, project: str | None, account: str, partition: str
) -> None:
    c = config(
        account="guests",
        accounts={"um6p": "um6p", "um6p/vision": "um6p-vision"},
        partition="gpu",
        partitions={"um6p/vision": "big"},
    )
    assert c.account_for(tenant, project) == account
    assert c.partition_for(tenant, project) == partition


def test_the_placement_is_pinned_node_by_node() -> None:
    args = sbatch_options(
        spec(("gpu01", 8), ("gpu02", 8)),
        config(partition="gpu"),
        run_dir="/s/runs/j1/2",
        gpu_types={"gpu01": "h100", "gpu02": "h100"},
    )
    assert "--nodelist=gpu01,gpu02" in args
    assert "--nodes=2" in args
    assert "--gres=gpu:h100:8" in args
    assert "--job-name=masnaa-j1-2" in args and "--comment=masnaa:j1:2" in args
    assert "--no-requeue" in args and "--partition=gpu" in args
    assert "--output=/s/runs/j1/2/stdout" in args


def test_uneven_slices_ask_for_the_total_and_mixed_types_stay_untyped() -> None:
    args = sbatch_options(
        spec(("a", 4), ("b", 2)), config(), run_dir="/r", gpu_types={"a": "h100", "b": "a100"}
    )
    assert "--gpus=6" in args
    assert not any(a.startswith("--gres") for a in args)


@pytest.mark.parametrize(
    ("limit", "grace", "minutes"), [(1, 30, 2), (3600, 30, 62), (59, 0, 2), (0.5, 0, 2)]
)
def test_slurm_time_is_a_backstop_in_whole_minutes(
    limit: float, grace: float, minutes: int
) -> None:
    args = sbatch_options(
        spec(("a", 1), time_limit=limit, kill_grace=grace), config(), run_dir="/r"
    )
    assert f"--time={minutes}" in args


def test_a_placement_must_name_each_node_once() -> None:
    with pytest.raises(LaunchRejected, match="twice"):
        sbatch_options(spec(("a", 1), ("a", 1)), config(), run_dir="/r")
    with pytest.raises(LaunchRejected, match="no node"):
        sbatch_options(spec(), config(), run_dir="/r")


def test_nodes_map_types_and_topology_from_the_factory_description() -> None:
    c = config(gpu_types={"h100": "h100-sxm-80gb"}, topology={"gpu01": ("nvl-a", "leaf-a")})
    assert c.masnaa_gpu_type("h100") == "h100-sxm-80gb"
    assert c.masnaa_gpu_type("l40s") == "l40s"
    assert c.domains_for("gpu01") == ("nvl-a", "leaf-a", "ma-1")
    assert c.domains_for("gpu02") == ("ma-1/gpu02", "ma-1/leaf", "ma-1")


def test_a_factory_sites_flat_options_become_the_slurm_config(tmp_path: Path) -> None:
    c = SlurmSiteConfig.from_site_options(
        "ma-1",
        {
            "partition": "gpu",
            "account.um6p/vision": "um6p-vis",
            "gpu_type.h100": "h100-80gb",
            "command_timeout": 5,
            "sbatch_args": "--qos=masnaa --mail-type=NONE",
        },
        home=tmp_path,
    )
    assert c.state_dir == tmp_path / "slurm" / "ma-1"
    assert c.account_for("um6p", "vision") == "um6p-vis"
    assert c.masnaa_gpu_type("h100") == "h100-80gb"
    assert c.sbatch_args == ("--qos=masnaa", "--mail-type=NONE")
    assert c.command_timeout == 5
    with pytest.raises(ValueError, match="unknown Slurm option 'partion'"):
        SlurmSiteConfig.from_site_options("ma-1", {"partion": "gpu"}, home=tmp_path)
    with pytest.raises(ValidationError, match="dispatch_threads"):
        SlurmSiteConfig.from_site_options("ma-1", {"dispatch_threads": 0}, home=tmp_path)


def test_an_executor_is_built_from_a_factory_site_without_asking_slurm(tmp_path: Path) -> None:
    from masnaa.executors.slurm import SlurmExecutor

    ex = SlurmExecutor.for_site("ma-1", {"partition": "gpu"}, tmp_path)
    assert ex.config.partition == "gpu" and ex.config.state_dir.is_dir()
    assert ex.capabilities.supports_adoption and ex.capabilities.multi_node
    assert ex.poll_many([]) == {}  # nothing asked, nothing to ask Slurm
