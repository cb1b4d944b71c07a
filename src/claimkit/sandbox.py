"""Run untrusted generated Python with its unit tests, each program in its own guarded process.

A capability claim ("the edit left the model able to write working code") needs
the model's code to be run, and that code was written by a model: it may loop,
allocate without bound, delete files or call the network. Nothing of it runs in
the calling process. Each program gets a fresh interpreter (`python -I -B`,
isolated mode: no user site, no PYTHON* variables, no bytecode written) started by
`claimkit/sandbox_child.py` with

  - a fresh temporary directory as working directory, HOME and TMPDIR, removed afterwards;
  - a minimal environment (nothing inherited: no tokens, no proxies, no secrets);
  - resource limits: address space, CPU seconds, file size, open files, no new
    processes or threads where the kernel enforces it (not for root);
  - no network (a new network namespace where allowed, and socket creation refused);
  - process, thread, signal and file-system functions stubbed in the spirit of HumanEval's
    `reliability_guard` (openai/human-eval, human_eval/execution.py): changes to
    files outside the temporary directory are refused;
  - a wall-clock timeout, after which its whole process group is killed.

The program's code runs first, then the checks (plain `assert` statements) in the
same namespace. The result says what happened: `passed`; `failed` (an assertion
did not hold); `error` (any other exception, a refused call, the memory or CPU
limit, a crash) or `timeout`, each with a short reason.

Only the standard library is used on both sides (tqdm only for an optional progress bar).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

__all__ = ["CheckResult", "Limits", "Program", "run_checks", "run_program"]

Outcome = Literal["passed", "failed", "error", "timeout"]
OUTCOMES: tuple[Outcome, ...] = ("passed", "failed", "error", "timeout")
CHILD = Path(__file__).with_name("sandbox_child.py")
DEFAULT_TIMEOUT = 5.0  # seconds of wall-clock time per program, interpreter start included


@dataclass(frozen=True)
class Limits:
    """Resource limits of the child process (`resource.setrlimit`, soft = hard)."""

    memory_bytes: int = 1 << 30  # address space: a memory bomb gets MemoryError, not the machine
    file_size_bytes: int = 16 << 20  # the largest file the program may write
    open_files: int = 64

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive whole number, got {value!r}")


@dataclass(frozen=True)
class Program:
    """Code to test and the checks that test it; the checks run after the code, in its namespace."""

    code: str
    checks: str = ""


@dataclass(frozen=True)
class CheckResult:
    """What running one program gave: the outcome, why (empty when it passed), and how long it took."""

    outcome: Outcome
    reason: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


def run_program(
    program: Program | str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    limits: Limits = Limits(),
    python: str | None = None,
) -> CheckResult:
    """Run one program (a `Program`, or source that already holds its asserts) in a fresh sandbox.

    `python` is the interpreter to run it with (default: this one, so the answer can
    import what this environment has installed).
    """
    if isinstance(program, str):
        program = Program(program)
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    root = Path(tempfile.mkdtemp(prefix="claimkit-sandbox-")).resolve()
    request = {
        "code": program.code,
        "checks": program.checks,
        "root": str(root),
        # CPU seconds are a backstop for the wall clock, which the parent enforces.
        "limits": {**asdict(limits), "cpu_seconds": math.ceil(timeout) + 1},
    }
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            [python or sys.executable, "-I", "-B", str(CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=root,
            env=_environment(root),
            start_new_session=True,  # its own process group, killed as a whole on timeout
            close_fds=True,
        )
        try:
            out, err = proc.communicate(json.dumps(request).encode("utf-8"), timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return CheckResult("timeout", f"no result within {timeout:g} s", time.monotonic() - start)
        return _result(proc.returncode, out, err, time.monotonic() - start)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_checks(
    programs: Sequence[Program | str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int | None = None,
    limits: Limits = Limits(),
    python: str | None = None,
    progress: bool = False,
) -> list[CheckResult]:
    """Run every program in its own sandbox, `workers` at a time; results in the programs' order.

    `workers` defaults to the number of CPUs; each worker is a thread that waits on
    its child process, so the parallelism is in the children. `progress` shows a
    tqdm bar (useful for hundreds of programs).
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive whole number, got {workers!r}")
    if not programs:
        return []
    workers = min(workers or os.cpu_count() or 1, len(programs))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="claimkit-sandbox") as pool:
        futures = [pool.submit(run_program, p, timeout=timeout, limits=limits, python=python) for p in programs]
        if progress:
            from tqdm.auto import tqdm

            with tqdm(total=len(futures), desc="sandbox", unit="program", leave=False) as bar:
                for _ in as_completed(futures):
                    bar.update(1)
        return [f.result() for f in futures]


def _environment(root: Path) -> dict[str, str]:
    """The child's whole environment: nothing of ours (tokens, proxies, credentials) goes along."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(root),
        "TMPDIR": str(root),  # tempfile writes inside the sandbox directory
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",  # -B does this under -I, which ignores PYTHON* variables
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone


def _result(returncode: int, out: bytes, err: bytes, seconds: float) -> CheckResult:
    """The child's report, or why there is none (a signal, a crash of the runner itself)."""
    lines = out.decode("utf-8", "replace").strip().splitlines()
    if returncode == 0 and lines:
        try:
            report = json.loads(lines[-1])
        except json.JSONDecodeError:
            report = {}
        if report.get("outcome") in OUTCOMES:
            return CheckResult(report["outcome"], str(report.get("reason", "")), seconds)
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        why = {"SIGXCPU": " (CPU time limit)", "SIGKILL": " (killed: memory or CPU limit)"}.get(name, "")
        return CheckResult("error", f"killed by {name}{why}", seconds)
    tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
    return CheckResult("error", f"the sandbox runner exited with {returncode} and no report: {tail[0]}"[:240], seconds)
