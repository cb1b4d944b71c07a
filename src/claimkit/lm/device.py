"""Where a model runs and in what precision, and the errors people see when it cannot.

CUDA when present (bf16 where the GPU supports it, else fp16), otherwise CPU in
float32. Loading failures that have a known remedy — a missing model or file, a
missing optional package, a GPU out of memory — become one `ModelLoadError`
that says what happened and what to do, instead of a library traceback. On a
GPU, claimkit picks kernels that give the same bits every run: attention off
cuDNN, and deterministic kernels while fine-tuning.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator, Sequence


class ModelLoadError(RuntimeError):
    """A model could not be loaded or run; the message says what to do about it."""


def choose_device(requested: str | None = None) -> str:
    """"cuda" when a GPU is present, else "cpu"; an explicit request is checked, not trusted."""
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device {requested!r} was requested but torch sees no CUDA GPU "
            f"(torch {torch.__version__}); run on a GPU machine or ask for device='cpu'"
        )
    return requested


def choose_dtype(device: str, requested: Any = None) -> Any:
    """bf16 on CUDA (fp16 where bf16 is unsupported), float32 on CPU; `requested` may be a name."""
    import torch

    if requested is not None:
        if isinstance(requested, torch.dtype):
            return requested
        dtype = getattr(torch, str(requested), None)
        if not isinstance(dtype, torch.dtype):
            raise ModelLoadError(f"unknown dtype {requested!r}; use e.g. 'float32', 'bfloat16' or 'float16'")
        return dtype
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def reproducible_attention() -> None:
    """Keep PyTorch's scaled-dot-product attention off its cuDNN backend, for this process.

    Seeded sampling must give the same texts every run. On an H200 (torch 2.11,
    bf16, a padding mask) torch picks cuDNN attention, and two samplings of the same
    128 prompts with the same seeds agreed on only 41; with the memory-efficient
    backend, the math backend or eager attention all 128 agreed, and the efficient
    backend was also twice as fast (reports/gpu-20261201-determinism). torch's
    deterministic-algorithms mode does not flag it. Called when a model is loaded
    onto a GPU; the other backends stay as torch chooses them.
    """
    import torch

    torch.backends.cuda.enable_cudnn_sdp(False)


class NotDeterministicError(RuntimeError):
    """torch refused an operation inside `deterministic_kernels`: it has no deterministic kernel."""


# What torch needs in CUBLAS_WORKSPACE_CONFIG before it lets cuBLAS run in deterministic mode.
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"


@contextlib.contextmanager
def deterministic_kernels(enabled: bool = True) -> Iterator[None]:
    """Inside the block torch must use deterministic kernels (its strict mode); outside, as before.

    The memory-efficient attention backward can split long key ranges and add their
    gradients with atomics, in whatever order the threads finish; only strict mode
    makes it use one split (warn_only mode merely warns). Two cold GPU suite runs
    before this gave different samples from 4 of 16 fine-tuned arms
    (reports/gpu-20261201-reproducible), but one of those arms later fine-tuned
    identically with and without strict mode (reports/gpu-20261201-strict), so
    what made those runs differ is not known. Strict mode raises on any
    operation that has no deterministic kernel; that error becomes a
    NotDeterministicError, so callers can go on without.

    cuBLAS is allowed in strict mode only with CUBLAS_WORKSPACE_CONFIG set; it is set
    to :4096:8 for this process unless the user has set it.
    """
    import os

    import torch

    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    except RuntimeError as exc:
        if "deterministic" in str(exc) and not isinstance(exc, NotDeterministicError):
            raise NotDeterministicError(str(exc)) from exc
        raise
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def require_package(module: str, pip_name: str, why: str) -> None:
    """Raise a ModelLoadError naming the pip command when an optional package is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ModelLoadError(f"{why} needs the package {pip_name!r}, which is not installed: pip install {pip_name}")


def require_versions(requirements: Sequence[str], why: str) -> None:
    """Raise a ModelLoadError naming every requirement the installed packages do not meet, and the fix.

    For what a model needs beyond claimkit's own dependencies (a profile's `requires`): an
    older release may load the model without complaint and still read it wrong.
    """
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    unmet = []
    for text in requirements:
        requirement = Requirement(text)
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            unmet.append(f"{text} (not installed)")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(f"{text} (installed: {installed})")
    if unmet:
        quoted = " ".join(f"'{text}'" for text in requirements)
        raise ModelLoadError(f"{why} needs {', '.join(unmet)}: pip install -U {quoted}")


@contextlib.contextmanager
def friendly_errors(what: str) -> Iterator[None]:
    """Turn out-of-memory and missing-package failures inside the block into ModelLoadError."""
    import torch

    try:
        yield
    except ModelLoadError:
        raise
    except torch.OutOfMemoryError as exc:
        raise ModelLoadError(
            f"{what}: the GPU ran out of memory ({_first_line(exc)}). Lower the batch size in the "
            f"profile ([sampling] / [finetune] batch_size), use a smaller model, or free the GPU "
            f"(nvidia-smi shows who holds it)."
        ) from exc
    except ImportError as exc:
        missing = getattr(exc, "name", None) or _first_line(exc)
        raise ModelLoadError(f"{what}: a package it needs is missing ({missing}): {_first_line(exc)}") from exc


class CompileFallbackWarning(RuntimeWarning):
    """A compiled path failed and the run went on eagerly: its results stand, its speed is the eager path's."""


def warn_compile_failed(what: str, exc: BaseException, redo: str) -> None:
    """The warning of a compiled path that failed: the run goes on eagerly, nothing is lost."""
    warnings.warn(f"{what} failed ({type(exc).__name__}: {str(exc)[:300]}); {redo} without compile",
                  CompileFallbackWarning, stacklevel=3)  # fmt: skip


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
