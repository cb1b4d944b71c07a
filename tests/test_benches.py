"""The GPU benches still run: each one's CPU smoke mode (tiny random models) end to end.

Their figures come from the GPU; here only that they run and print what they
promise, so a bench does not rot between GPU sessions.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("torch")
pytest.importorskip("peft")


def bench_module(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A bench script imported as a module, as it imports its neighbours (bench/ on sys.path)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    return importlib.import_module(name)


def run_bench(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_finetune_bench_runs_every_lora_dtype_and_profiles():
    out = run_bench("bench/gpu_finetune.py", "--tiny", "--steps", "1", "--warmup", "1", "--profile", "--repeats", "2")
    assert out.count("(a) random Llama-3.2-3B-shaped model") == 4  # as configured, then fp32, mixed, bf16
    assert "profile of one step" in out and "median of 2" in out and out.rstrip().splitlines()[-1].startswith("JSON ")


def test_the_sampling_bench_runs():
    out = run_bench("bench/gpu_sampling.py", "--tiny")
    assert "greedy equality" in out and "tok/s" in out


def test_the_determinism_bench_compares_within_and_across_processes():
    out = run_bench("bench/gpu_determinism.py", "--tiny", "--prompts", "4", "--processes", "1")
    assert "same process, second sampling: 4/4 texts identical" in out
    assert "process 1 of 1 sampling at once: 4/4 texts identical" in out


def test_the_determinism_bench_compares_attention_kernels():
    out = run_bench("bench/gpu_determinism.py", "--tiny", "--prompts", "4", "--attention")
    for kernel in ("CUDNN_ATTENTION", "EFFICIENT_ATTENTION", "FLASH_ATTENTION", "MATH", "eager"):
        assert f"\n{kernel}" in out  # compared, or "not run" with torch's reason (no such kernel on a CPU)
    assert "eager (" in out and "4/4 texts identical" in out


def test_the_determinism_bench_compares_fine_tunes_with_and_without_deterministic_kernels():
    out = run_bench("bench/gpu_determinism.py", "--tiny", "--finetune", "--examples", "8", "--epochs", "1")
    assert "deterministic kernels (claimkit): " in out and "kernels as torch picks them: " in out
    assert out.count("adapter tensors identical") == 2 and "losses identical: True" in out


def test_the_suite_bench_says_whether_a_run_reproduced_an_earlier_one(tmp_path, capsys, monkeypatch):
    from claimkit.report import write_run
    from claimkit.verdict import Estimate, Evidence, Outcome, Verdict

    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    gpu_suite = bench_module("gpu_suite", monkeypatch)

    def run(successes: int) -> Path:
        verdict = Verdict(claim_id="c-1", paper="demo", scan_claim="s", profile="organism", model="m", outcome=Outcome.SUPPORTED,
                          reason="because", evidence=Evidence(estimates=(Estimate("rate", successes / 100, n=100, successes=successes),)),
                          rule={}, spec_hash="sha256:one")  # fmt: skip
        return write_run(tmp_path / "reports", [verdict], command="pytest", claimkit_version="1").run_dir / "verdicts.json"

    first, same, moved = run(40), run(40), run(41)
    gpu_suite.print_reproduction(same, first)
    assert "0 outcome change(s), 0 verdict(s) with other numbers, 1 identical" in capsys.readouterr().out
    gpu_suite.print_reproduction(moved, first)
    out = capsys.readouterr().out
    assert "1 verdict(s) with other numbers, 0 identical" in out and "estimate 'rate' value: 0.4 -> 0.41" in out
    gpu_suite.print_reproduction(moved, tmp_path / "absent.json")
    assert "not compared" in capsys.readouterr().out


def test_the_suite_bench_says_whether_bytecode_is_cached(monkeypatch):
    gpu_suite = bench_module("gpu_suite", monkeypatch)
    assert gpu_suite.bytecode_caching({}).startswith("cached in __pycache__")
    assert "under PYTHONPYCACHEPREFIX=/tmp/p" in gpu_suite.bytecode_caching({"PYTHONPYCACHEPREFIX": "/tmp/p"})
    off = gpu_suite.bytecode_caching({"PYTHONDONTWRITEBYTECODE": "1"})
    assert off.startswith("not written") and "every worker" in off


def test_the_sampling_bench_times_no_compiled_path_that_fell_back(monkeypatch, capsys):
    """A fallback would be timed under the compiled path's name; the bench says so and leaves it out."""
    import warnings

    from claimkit.lm.device import warn_compile_failed

    gpu_sampling = bench_module("gpu_sampling", monkeypatch)

    def falls_back(*args, **kwargs):
        warn_compile_failed("sample_fast: the compiled decode step", RuntimeError("X"), "redoing this batch")
        warnings.warn("something else", UserWarning)
        return []

    monkeypatch.setattr(importlib.import_module("claimkit.lm.sample"), "sample", falls_back)
    with pytest.warns(UserWarning, match="something else"):  # other warnings still show
        run = gpu_sampling.timed(None, ["p"], 4, 0, "fast+compile", 1, sampler="fast", compile=True)
    assert run is None and "not timed, the compiled step fell back to eager" in capsys.readouterr().out


@pytest.mark.parametrize("own_session", [True, False])
def test_a_bench_sent_sigterm_stops_its_children(tmp_path, own_session):
    import contextlib
    import os
    import signal
    import time

    pids = tmp_path / "pids"
    parent = subprocess.Popen([sys.executable, "-c", f"""
import subprocess, sys, time
sys.path.insert(0, {str(ROOT / "bench")!r})
from gpu_common import children_stopped_on_exit
with children_stopped_on_exit() as children:
    children.append(subprocess.Popen(["sleep", "300"], start_new_session={own_session}))
    open({str(pids)!r}, "w").write(str(children[0].pid))
    children[0].wait()
"""])  # fmt: skip
    deadline = time.monotonic() + 60
    while not (pids.is_file() and pids.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pids.read_text())
    try:
        parent.send_signal(signal.SIGTERM)  # as `timeout` does: to the bench alone, not its children
        assert parent.wait(timeout=30) == 128 + signal.SIGTERM
        with pytest.raises(ProcessLookupError):  # stopped and reaped by the bench, not orphaned
            os.kill(child, 0)
    finally:  # a failing run leaves no sleeping process behind
        parent.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
