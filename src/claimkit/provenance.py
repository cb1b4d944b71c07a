"""Where a verdict came from: the checkout, the code, the packages and the machine.

A number is reproducible only under the conditions it was made in, so every verdict
record and every run carries them: the git commit of the checkout and whether the
tree was dirty (with a hash of what differed from the commit), a hash of claimkit's
own source and of the claim package's, the versions of the packages that can move a
number, the device, and the command line. Two runs that agree in all of them should
give the same numbers; `claimkit report --against` names the ones two runs differ in.

Collecting this stays light: versions come from installed package metadata (nothing
is imported), torch is consulted only where the process has already imported it and
initialised CUDA (provenance never initialises CUDA), and what cannot change within
a process (versions, claimkit's source, the CPU, the checkout's state) is read once.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

PACKAGES = ("torch", "transformers", "peft", "sae-lens", "bandit", "numpy", "scipy", "statsmodels")
"""Distributions whose versions go into every record: each one can change a number or a detection."""

SKIPPED_NAMES = ("__pycache__",)
SKIPPED_SUFFIXES = (".pyc",)
GIT_TIMEOUT_S = 10.0
NVIDIA_SMI_TIMEOUT_S = 5.0  # a wedged driver can hang nvidia-smi; a verdict must not wait on it


# -- content hashes ---------------------------------------------------------------------


def content_hash(path: str | Path, *, suffixes: tuple[str, ...] | None = None, recursive: bool = True) -> str:
    """sha256 of a file's bytes, or of a directory's files (relative path and bytes, sorted by path).

    Bytecode (`__pycache__`, `*.pyc`) is skipped: it follows the source. `suffixes`
    keeps only files that end so; `recursive=False` reads only the directory's own files.
    Raises FileNotFoundError for a path that does not exist.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        _feed_file(digest, path)
        return "sha256:" + digest.hexdigest()
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    for relative, file in _files_under(path, suffixes, recursive):
        digest.update(relative.encode("utf-8") + b"\0")
        _feed_file(digest, file)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def _files_under(directory: Path, suffixes: tuple[str, ...] | None, recursive: bool) -> list[tuple[str, Path]]:
    found = []
    for file in directory.rglob("*") if recursive else directory.iterdir():
        relative = file.relative_to(directory)
        if any(part in SKIPPED_NAMES for part in relative.parts) or file.name.endswith(SKIPPED_SUFFIXES):
            continue
        if suffixes is not None and not file.name.endswith(suffixes):
            continue
        if file.is_file():
            found.append((relative.as_posix(), file))
    return sorted(found)


def _feed_file(digest: Any, path: Path) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def short_hash(value: Any, digits: int = 12) -> str:
    """"sha256:0123456789ab" of a "sha256:<64 hex>" hash: enough to tell two apart in a sentence."""
    text = str(value)
    algorithm, sep, digest = text.partition(":")
    return f"{algorithm}:{digest[:digits]}" if sep else text[:digits]


@functools.cache
def claimkit_source_hash() -> str:
    """Hash of the .py files of the claimkit package as imported (not as installed elsewhere)."""
    return content_hash(Path(__file__).resolve().parent, suffixes=(".py",))


def claim_code_hash(directory: str | Path) -> str:
    """Hash of the .py files directly in a claim package's directory (its tests, conftest, helpers).

    Not cached: it is a handful of small files, and it must follow an edit between
    two runs of one process (pytester).
    """
    return content_hash(directory, suffixes=(".py",), recursive=False)


# -- the checkout -----------------------------------------------------------------------


def git_state(directory: str | Path) -> dict[str, Any]:
    """{"commit", "dirty", "diff_hash"} of the git checkout holding `directory`.

    `diff_hash` (only when dirty) is the sha256 of `git diff HEAD` plus the names and
    bytes of untracked files that are not ignored: two dirty trees with the same hash
    hold the same edits. Outside a checkout, or without git, every field is None.
    """
    top = _git(directory, "rev-parse", "--show-toplevel")
    commit = _git(directory, "rev-parse", "HEAD")
    if top is None or commit is None:
        return {"commit": None, "dirty": None, "diff_hash": None}
    root = Path(top.decode().strip())
    diff = _git(root, "diff", "HEAD", "--binary", "--no-ext-diff", "--no-color") or b""
    untracked = [n for n in (_git(root, "ls-files", "--others", "--exclude-standard", "-z") or b"").split(b"\0") if n]
    dirty = bool(diff) or bool(untracked)
    diff_hash = _diff_hash(root, diff, untracked) if dirty else None
    return {"commit": commit.decode().strip(), "dirty": dirty, "diff_hash": diff_hash}


@functools.cache
def checkout_state(directory: str | Path) -> dict[str, Any]:
    """`git_state`, read once per process and directory: a run records the tree it started on."""
    return git_state(directory)


def _diff_hash(root: Path, diff: bytes, untracked: Iterable[bytes]) -> str:
    digest = hashlib.sha256(diff)
    for name in sorted(untracked):
        digest.update(b"\0untracked\0" + name + b"\0")
        file = root / os.fsdecode(name)
        if file.is_file():
            _feed_file(digest, file)
    return "sha256:" + digest.hexdigest()


def _git(directory: str | Path, *args: str) -> bytes | None:
    """git's stdout, or None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, timeout=GIT_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


# -- packages and device ------------------------------------------------------------------


@functools.cache
def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Python's version and each installed distribution's (None where it is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device() -> dict[str, Any]:
    """The CPU, and the GPU this process computes on: only where it has already initialised CUDA."""
    return {**_cpu(), "gpu": _gpu()}


@functools.cache
def _cpu() -> dict[str, Any]:
    return {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _gpu() -> dict[str, Any] | None:
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    initialised = getattr(cuda, "is_initialized", None)
    if not callable(initialised) or not initialised():
        return None
    try:
        index = cuda.current_device()
        name = cuda.get_device_name(index)
        count = cuda.device_count()
    except Exception:  # a broken driver must not cost the verdict its record
        return None
    return {"name": name, "count": count, "cuda": getattr(getattr(torch, "version", None), "cuda", None),
            "driver": _driver_version()}


@functools.cache
def _driver_version() -> str | None:
    """The NVIDIA driver's version from nvidia-smi (one host has one driver), or None."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.strip().splitlines() if done.returncode == 0 else []
    return lines[0].rsplit(",", 1)[-1].strip() if lines and "," in lines[0] else None


def describe_device(device: Mapping[str, Any] | None) -> str:
    """One phrase: the GPU with driver and CUDA, else the CPU model and core count."""
    if not device:
        return "unknown device"
    gpu = device.get("gpu")
    if gpu:
        return f"{gpu.get('name')} (driver {gpu.get('driver') or '?'}, CUDA {gpu.get('cuda') or '?'})"
    return f"CPU {device.get('cpu') or '?'} ({device.get('cpu_count') or '?'} cores)"


# -- records --------------------------------------------------------------------------------


def run_provenance(*, command: str, checkout: str | Path) -> dict[str, Any]:
    """A run's provenance, on the process that writes the report: checkout, claimkit's source,
    versions, device and command."""
    git = checkout_state(Path(checkout).resolve())
    return {
        "commit": git["commit"],
        "dirty": git["dirty"],
        "diff_hash": git["diff_hash"],
        "claimkit_source": claimkit_source_hash(),
        "versions": dict(package_versions()),
        "device": device(),
        "command": command,
    }


def verdict_provenance(
    *, command: str, claim_dir: str | Path, models: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A verdict's provenance, on the process that decided it (an xdist worker's device).

    `claim_dir` is the directory of the deciding test module: its .py files are the
    claim package's code. `models` (name -> hash or path) records the resolved
    models and adapters behind the verdict, where the claim passes them to `decide`.
    """
    record = run_provenance(command=command, checkout=claim_dir)
    record["claim_dir"] = display_path(claim_dir)
    record["claim_code"] = claim_code_hash(claim_dir)
    if models:
        record["models"] = {str(k): str(v) for k, v in sorted(models.items())}
    return record


def display_path(path: str | Path) -> str:
    """`path` relative to the working directory where it lies under it, else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)
