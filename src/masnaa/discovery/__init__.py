"""What GPUs this machine has: NVML where it can be loaded, else a declared virtual inventory.

``discover()`` never fails for want of GPUs: without NVML (no driver, no GPU,
a container without the library) it returns a virtual inventory whose every
GPU is labelled ``virtual`` — in the store, in ``masnaa up``'s banner and in
the API — so nobody mistakes it for hardware. Jobs on virtual GPUs are still
real processes; only ``CUDA_VISIBLE_DEVICES`` points at nothing.
"""

from masnaa.discovery.inventory import GpuInfo, Inventory, discover, virtual_inventory
from masnaa.discovery.names import normalise_gpu_name

__all__ = ["GpuInfo", "Inventory", "discover", "normalise_gpu_name", "virtual_inventory"]
