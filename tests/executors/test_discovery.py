"""GPU discovery: name normalisation (table), the virtual fallback when NVML is absent, and
grouping of real GPUs into nodes."""

from __future__ import annotations

import pytest

from masnaa.discovery import discover, normalise_gpu_name, virtual_inventory
from masnaa.discovery.inventory import (
    GpuInfo,
    NvmlUnavailable,
    inventory_from_gpus,
    parse_virtual,
    probe_nvml,
)


@pytest.mark.parametrize(
    ("nvml_name", "memory_mib", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", 81559, "h100-80gb"),
        ("NVIDIA H100 PCIe", 81559, "h100-pcie-80gb"),
        ("NVIDIA H100 NVL", 95830, "h100-nvl-94gb"),
        ("NVIDIA H200", 143771, "h200-141gb"),
        ("NVIDIA A100-SXM4-80GB", 81920, "a100-80gb"),
        ("NVIDIA A100-SXM4-40GB", 40960, "a100-40gb"),
        ("NVIDIA A100-PCIE-40GB", 40960, "a100-pcie-40gb"),
        ("NVIDIA A100 80GB PCIe", 81920, "a100-pcie-80gb"),
        ("NVIDIA L40S", 46068, "l40s-48gb"),
        ("NVIDIA GeForce RTX 4090", 24564, "rtx-4090-24gb"),
        ("Tesla V100-SXM2-32GB", 32768, "v100-32gb"),
        ("NVIDIA B200", 183359, "b200-180gb"),
        ("NVIDIA H100 80GB HBM3", None, "h100-80gb"),
        ("NVIDIA L4", None, "l4"),
    ],
)
def test_nvml_names_normalise_to_gpu_types(
    nvml_name: str, memory_mib: int | None, expected: str
) -> None:
    assert normalise_gpu_name(nvml_name, memory_mib) == expected


@pytest.mark.parametrize("bad", ["", "   ", "NVIDIA", "NVIDIA 80GB"])
def test_names_without_a_model_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_gpu_name(bad)


def _nvml_works() -> bool:
    try:
        probe_nvml()
    except NvmlUnavailable:
        return False
    return True


@pytest.mark.skipif(_nvml_works(), reason="this machine has NVML: the fallback is not taken")
def test_without_nvml_discovery_falls_back_to_a_labelled_virtual_inventory() -> None:
    with pytest.raises(NvmlUnavailable):
        probe_nvml()
    inv = discover("2x4")
    assert inv.virtual
    assert "virtual" in inv.source and "NVML" in inv.source
    assert [len(n.gpus) for n in inv.nodes] == [4, 4]
    assert all(n.gpu_type == "virtual-gpu" for n in inv.nodes)
    assert all(g.virtual and g.uuid.startswith("virtual-") for n in inv.nodes for g in n.gpus)


@pytest.mark.skipif(not _nvml_works(), reason="no NVML on this machine")
def test_with_nvml_discovery_reports_the_real_gpus() -> None:
    inv = discover()
    assert not inv.virtual and inv.gpu_count == len(probe_nvml())
    assert all(g.uuid.startswith(("GPU-", "MIG-")) for n in inv.nodes for g in n.gpus)


def test_forcing_a_virtual_inventory_works_anywhere() -> None:
    inv = discover("3", force_virtual=True)
    assert inv.virtual and inv.gpu_count == 3 and "asked for" in inv.source


@pytest.mark.parametrize(("spec", "shape"), [("8", (1, 8)), ("2x8", (2, 8)), (" 4 × 2 ", (4, 2))])
def test_virtual_shapes_parse(spec: str, shape: tuple[int, int]) -> None:
    assert parse_virtual(spec) == shape


@pytest.mark.parametrize("spec", ["", "x8", "2x", "0", "2x0", "eight"])
def test_bad_virtual_shapes_say_what_would_be_right(spec: str) -> None:
    with pytest.raises(ValueError, match=r"GPUS|at least one"):
        parse_virtual(spec)


def test_real_gpus_group_into_one_node_per_type_keeping_nvml_indices() -> None:
    gpus = [
        GpuInfo(0, "GPU-a", "NVIDIA H100 80GB HBM3", 81559),
        GpuInfo(1, "GPU-b", "NVIDIA L40S", 46068),
        GpuInfo(2, "GPU-c", "NVIDIA H100 80GB HBM3", 81559),
    ]
    inv = inventory_from_gpus(gpus, "box", source="nvml")
    assert not inv.virtual
    by_type = {n.gpu_type: n for n in inv.nodes}
    assert [g.nvml_index for g in by_type["h100-80gb"].gpus] == [0, 2]
    assert by_type["h100-80gb"].name == "box-h100-80gb" and by_type["h100-80gb"].memory_gb == 80
    assert inv.nvml_indices() == {"GPU-a": 0, "GPU-b": 1, "GPU-c": 2}
    single = inventory_from_gpus(gpus[:1], "box", source="nvml")
    assert single.nodes[0].name == "box"


def test_virtual_inventory_names_nodes_after_the_host() -> None:
    inv = virtual_inventory("2x2", host="lab")
    assert [n.name for n in inv.nodes] == ["lab-v0", "lab-v1"]
