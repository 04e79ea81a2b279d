"""Probe this machine's GPUs (NVML) or declare a virtual inventory.

Terms: an ``Inventory`` is what one machine offers: one or more nodes (one
per GPU type present; almost always one), each a list of ``GpuInfo``. A
node's GPUs are numbered 0..n-1 in NVML (PCI bus) order within their type;
``nvml_index`` keeps the machine-wide index that ``CUDA_VISIBLE_DEVICES``
needs when a machine mixes types.

Virtual inventories are declared as ``"8"`` (one node, 8 GPUs) or ``"2x8"``
(two nodes of 8), with ``MASNAA_VIRTUAL_GPUS`` or the caller's argument;
their type is ``virtual-gpu`` and their UUIDs say ``virtual``.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field

from masnaa.discovery.names import normalise_gpu_name

VIRTUAL_GPU_TYPE = "virtual-gpu"
DEFAULT_VIRTUAL = "1x8"
VIRTUAL_ENV = "MASNAA_VIRTUAL_GPUS"


@dataclass(frozen=True, slots=True)
class GpuInfo:
    nvml_index: int
    uuid: str
    name: str
    memory_mib: int
    virtual: bool = False


@dataclass(frozen=True, slots=True)
class InventoryNode:
    name: str
    gpu_type: str
    memory_gb: int
    gpus: tuple[GpuInfo, ...]


@dataclass(frozen=True, slots=True)
class Inventory:
    virtual: bool
    nodes: tuple[InventoryNode, ...]
    source: str
    """How it was found: ``nvml (driver 550.54)`` or why it is virtual."""
    notes: tuple[str, ...] = field(default=())

    @property
    def gpu_count(self) -> int:
        return sum(len(n.gpus) for n in self.nodes)

    def nvml_indices(self) -> dict[str, int]:
        """UUID → machine-wide NVML index (what ``CUDA_VISIBLE_DEVICES`` names)."""
        return {g.uuid: g.nvml_index for n in self.nodes for g in n.gpus}


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used here; the message says why."""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe_nvml() -> list[GpuInfo]:
    """Every GPU NVML sees, in index order; ``NvmlUnavailable`` if NVML cannot be used."""
    try:
        import pynvml
    except ImportError as exc:  # nvidia-ml-py is a dependency; guard anyway
        raise NvmlUnavailable(f"nvidia-ml-py is not installed ({exc})") from exc
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML did not initialise: {exc}") from exc
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GpuInfo(
                    nvml_index=index,
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_mib=int(memory.total) // (1024 * 1024),
                )
            )
        return gpus
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML failed while listing GPUs: {exc}") from exc
    finally:
        pynvml.nvmlShutdown()


def inventory_from_gpus(gpus: list[GpuInfo], host: str, source: str) -> Inventory:
    """Group real GPUs into one node per type (named after the host)."""
    by_type: dict[str, list[GpuInfo]] = {}
    for g in gpus:
        by_type.setdefault(normalise_gpu_name(g.name, g.memory_mib), []).append(g)
    several = len(by_type) > 1
    nodes = tuple(
        InventoryNode(
            name=f"{host}-{gpu_type}" if several else host,
            gpu_type=gpu_type,
            memory_gb=int(gpu_type.rsplit("-", 1)[-1].removesuffix("gb") or 0)
            if gpu_type.endswith("gb")
            else round(members[0].memory_mib / 1024),
            gpus=tuple(members),
        )
        for gpu_type, members in by_type.items()
    )
    return Inventory(virtual=False, nodes=nodes, source=source)


def parse_virtual(spec: str) -> tuple[int, int]:
    """``"8"`` → (1, 8); ``"2x8"`` → (2, 8)."""
    match = re.fullmatch(r"\s*(?:(\d+)\s*[x×]\s*)?(\d+)\s*", spec)
    if not match:
        raise ValueError(
            f"virtual inventory {spec!r} is not understood; write GPUS (e.g. 8) or "
            "NODESxGPUS (e.g. 2x8)"
        )
    nodes, gpus = int(match.group(1) or 1), int(match.group(2))
    if nodes < 1 or gpus < 1:
        raise ValueError(f"virtual inventory {spec!r} must have at least one node and one GPU")
    return nodes, gpus


def virtual_inventory(
    spec: str = DEFAULT_VIRTUAL, host: str | None = None, why: str = ""
) -> Inventory:
    """A declared inventory of ``virtual-gpu`` GPUs, labelled as such everywhere."""
    host = host or socket.gethostname().split(".")[0] or "localhost"
    nodes_n, gpus_n = parse_virtual(spec)
    nodes = []
    for n in range(nodes_n):
        name = host if nodes_n == 1 else f"{host}-v{n}"
        nodes.append(
            InventoryNode(
                name=name,
                gpu_type=VIRTUAL_GPU_TYPE,
                memory_gb=80,
                gpus=tuple(
                    GpuInfo(
                        nvml_index=i,
                        uuid=f"virtual-{name}-{i}",
                        name="virtual GPU",
                        memory_mib=80 * 1024,
                        virtual=True,
                    )
                    for i in range(gpus_n)
                ),
            )
        )
    source = f"virtual ({nodes_n}×{gpus_n} declared)" + (f": {why}" if why else "")
    return Inventory(virtual=True, nodes=tuple(nodes), source=source)


def discover(virtual: str | None = None, *, force_virtual: bool = False) -> Inventory:
    """This machine's GPUs through NVML, or a virtual inventory when there are none.

    ``virtual`` (or ``MASNAA_VIRTUAL_GPUS``) shapes the virtual inventory;
    ``force_virtual`` uses it even where NVML works (demos, tests).
    """
    spec = virtual or os.environ.get(VIRTUAL_ENV) or DEFAULT_VIRTUAL
    if force_virtual:
        return virtual_inventory(spec, why="asked for")
    host = socket.gethostname().split(".")[0] or "localhost"
    try:
        gpus = probe_nvml()
    except NvmlUnavailable as exc:
        return virtual_inventory(spec, host, why=str(exc))
    if not gpus:
        return virtual_inventory(spec, host, why="NVML found no GPU")
    return inventory_from_gpus(gpus, host, source=f"nvml ({len(gpus)} GPUs)")
