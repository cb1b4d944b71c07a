"""bench/paper_cost.py still runs: its CPU smoke mode (tiny random stand-ins of the paper's models) end to end.

Its figures come from a GPU; here only that every phase runs, says its weights are
random, and leaves every figure in the JSON file, so the bench does not rot before
the GPU session it is written for.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("sae_lens")

PHASES = ("stand_ins", "load_behaviour", "finetune_behaviour", "sampling", "load_mechanism", "load_sae", "residuals", "sampling_mechanism",
          "sae_encode", "finetune_mechanism", "total")  # fmt: skip


def test_every_phase_runs_on_the_tiny_stand_ins_and_says_the_weights_are_random(tmp_path):
    figures = tmp_path / "cost.json"
    done = subprocess.run(
        [sys.executable, "bench/paper_cost.py", "--tiny", "--device", "cpu", "--train-examples", "4", "--prompts", "4",
         "--read-texts", "4", "--max-new-tokens", "8", "--variants", "--json", str(figures)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("!!! RANDOM WEIGHTS") and done.stdout.rstrip().endswith("!!!")
    assert "MFU n/a (no CUDA)" in done.stdout and "FAILED" not in done.stdout
    data = json.loads(figures.read_text(encoding="utf-8"))
    assert data["random_weights"] is True and set(PHASES) <= set(data)
    assert data["finetune_behaviour"]["steps"] == 1 and data["finetune_behaviour"]["tokens_per_s"] > 0
    assert data["sampling"]["prompts"] == 4 and 0 < data["sampling"]["new_tokens"] <= 4 * 8
    assert data["residuals"]["layer"] == 20  # the profile's layer: the tiny Gemma is as deep as the real one
    assert data["variant_sampling_fast"]["options"]["sampler"] == "fast" and data["sampling"]["options"]["sampler"] != "fast"
    assert {"reload_behaviour", "variant_mixed_precision_off", "variant_batch_8", "variant_batch_32", "variant_max_length_192", "finetune_mechanism_real_shape"} <= set(data)
    assert data["sae_encode"]["features"] == 256 and data["finetune_behaviour"]["peak_gib"] is None  # NaN off CUDA


def test_a_phase_out_of_gpu_memory_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    import torch

    from claimkit.lm.device import ModelLoadError

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    bench = importlib.import_module("paper_cost")
    figures = bench.Figures(tmp_path / "cost.json")
    for error in (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
                  ModelLoadError("fine-tuning x: the GPU ran out of memory")):  # fmt: skip
        with bench.failure_recorded(figures, "finetune_mechanism"):
            raise error
        assert "FAILED: " in capsys.readouterr().out
    recorded = json.loads((tmp_path / "cost.json").read_text(encoding="utf-8"))
    assert recorded["finetune_mechanism"]["failed"].endswith("ran out of memory")
    with pytest.raises(ValueError), bench.failure_recorded(figures, "sampling"):  # a bug is not a figure
        raise ValueError("bug")
