"""Which GPUs this machine has, and the one GPU an xdist worker is given.

`pytest claims/ -m gpu -n N` starts N workers, and every one of them would put
its models on the first GPU. Instead the controller lists the GPUs it sees
(without importing torch, so start-up stays light) and hands the list to its
workers; worker `gwK` then keeps only the K-th of them (wrapping round) in
CUDA_VISIBLE_DEVICES, before torch initialises CUDA in it. A machine without
GPUs gets no pinning at all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Mapping, Sequence

VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
NVIDIA_SMI_TIMEOUT_S = 5.0  # a wedged driver can hang nvidia-smi; start-up must not wait on it

_DEVICE = re.compile(r"\d+|GPU-.+|MIG-.+")
_SMI_GPU = re.compile(r"^GPU (\d+):.*?(?:\(UUID: (GPU-[^)\s]+)\))?\s*$")
_WORKER = re.compile(r"gw(\d+)")


def parse_visible_devices(value: str) -> tuple[str, ...]:
    """The devices a CUDA_VISIBLE_DEVICES value leaves visible, in its order.

    CUDA reads the list up to its first entry that names no device, so "0,-1,1"
    is device 0 alone and "" or "-1" is none (CUDA C++ Programming Guide, "CUDA
    Environment Variables").
    """
    devices = []
    for entry in value.split(","):
        entry = entry.strip()
        if not _DEVICE.fullmatch(entry):
            break
        devices.append(entry)
    return tuple(devices)


def parse_nvidia_smi(listing: str) -> tuple[str, ...]:
    """The GPUs of an `nvidia-smi -L` listing, by UUID (by index where it shows none).

    A UUID names the same GPU whatever CUDA_DEVICE_ORDER says, where an index
    might not. MIG lines name instances inside a GPU listed above them; the GPU
    is what a worker gets.
    """
    devices = []
    for line in listing.splitlines():
        match = _SMI_GPU.match(line.strip())
        if match:
            devices.append(match.group(2) or match.group(1))
    return tuple(devices)


def visible_gpus(environ: Mapping[str, str] | None = None, *, nvidia_smi: str = "nvidia-smi",
                 timeout: float = NVIDIA_SMI_TIMEOUT_S) -> tuple[str, ...]:
    """The GPUs a CUDA program started here would see, as CUDA_VISIBLE_DEVICES entries.

    CUDA_VISIBLE_DEVICES when it is set (set and empty means none), else what
    `nvidia-smi -L` lists, else none: no nvidia-smi, or one that fails or hangs,
    means no GPUs.
    """
    environ = os.environ if environ is None else environ
    if VISIBLE_DEVICES in environ:
        return parse_visible_devices(environ[VISIBLE_DEVICES])
    try:
        listed = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return ()
    return parse_nvidia_smi(listed.stdout) if listed.returncode == 0 else ()


def worker_gpu(gpus: Sequence[str], worker_id: str) -> str | None:
    """The GPU of xdist worker `gwK`: the K-th of `gpus`, wrapping round.

    None when there are no GPUs or the id is not xdist's `gw<number>`.
    """
    match = _WORKER.fullmatch(worker_id)
    if not gpus or match is None:
        return None
    return gpus[int(match.group(1)) % len(gpus)]


def pin_to_gpu(device: str) -> str | None:
    """Make `device` the only GPU this process can see; returns a warning if it is too late.

    CUDA reads CUDA_VISIBLE_DEVICES once, when it initialises; a process where
    torch has already done so keeps the devices it saw.
    """
    os.environ[VISIBLE_DEVICES] = device
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    initialised = getattr(cuda, "is_initialized", None)
    if callable(initialised) and initialised():
        return (f"{VISIBLE_DEVICES}={device} was set after torch had initialised CUDA in this process, "
                f"so it still sees every GPU: move the CUDA call out of conftest/plugin import time")
    return None
