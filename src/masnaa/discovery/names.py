"""Normalise NVML's marketing names into Masnaa GPU type names.

A GPU type name is lowercase words joined by ``-``: the model, then the
variant words that make a different product (``pcie``, ``nvl``), then the
memory in GB: ``NVIDIA H100 80GB HBM3`` → ``h100-80gb``,
``NVIDIA A100-PCIE-40GB`` → ``a100-pcie-40gb``. Words that do not change what
a job can rely on are dropped: the vendor, the family (``tesla``,
``geforce``), the board form (``sxm4``) and the memory technology (``hbm3``).
When the name holds no size, the memory NVML reports is rounded to the
nearest size GPUs are sold with, within 8 % (NVML reports usable MiB, below the
label: an H200's 143,771 MiB is sold as 141 GB).
"""

from __future__ import annotations

import re

_DROP = frozenset({"nvidia", "tesla", "geforce", "quadro", "hbm", "hbm2", "hbm2e", "hbm3", "hbm3e"})
_VARIANTS = ("pcie", "nvl")
_SOLD_SIZES_GB = (
    8,
    10,
    11,
    12,
    16,
    20,
    24,
    32,
    40,
    48,
    64,
    80,
    94,
    96,
    141,
    144,
    180,
    186,
    192,
    288,
)
_SIZE = re.compile(r"^(\d+)gb$")


def rounded_memory_gb(memory_mib: int) -> int:
    """The marketed size (GB) closest to ``memory_mib`` of usable memory."""
    gib = memory_mib / 1024
    best = min(_SOLD_SIZES_GB, key=lambda size: abs(size - gib))
    return best if abs(best - gib) <= 0.08 * best else round(gib)


def normalise_gpu_name(name: str, memory_mib: int | None = None) -> str:
    """``NVIDIA H100 80GB HBM3`` → ``h100-80gb`` (see the module docstring)."""
    words = [w for w in re.split(r"[\s_\-/]+", name.strip().lower()) if w]
    if not words:
        raise ValueError("an empty GPU name cannot be normalised")
    size: int | None = None
    model: list[str] = []
    variants: list[str] = []
    for word in words:
        if word in _DROP or word.startswith("sxm"):
            continue
        match = _SIZE.match(word)
        if match:
            size = int(match.group(1))
        elif word in _VARIANTS:
            variants.append(word)
        else:
            model.append(word)
    if size is None and memory_mib:
        size = rounded_memory_gb(memory_mib)
    parts = [*model, *variants]
    if size is not None:
        parts.append(f"{size}gb")
    if not model:
        raise ValueError(f"no model in GPU name {name!r}")
    return "-".join(parts)
