"""bench/paper_projection.py: the paper plan's units counted from the spec, and each unit priced from paper_cost's figures."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def projection(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    return importlib.import_module("paper_projection")


def cost_figures() -> dict:
    """Round per-unit figures: 1 s per fine-tune step with 2 s of save, 64 s per sampled batch, 0.01 s per read text."""
    finetune = {"seconds_per_step": 1.0, "wall_seconds": 12.0, "loop_seconds": 10.0}
    return {"run": {"gpu": "test GPU"}, "variant_max_length_192": finetune, "finetune_mechanism_real_shape": finetune,
            "sampling": {"prompts": 128, "seconds": 64.0, "options": {"sampler": "generate"}}, "variant_sampling_fast": {"prompts": 256, "seconds": 64.0},
            "sampling_mechanism": {"prompts": 128, "seconds": 64.0}, "residuals": {"seconds_per_text": 0.01},
            "sae_encode": {"seconds_per_text": 0.0}, "load_behaviour": {"seconds": 5.0}, "load_mechanism": {"seconds": 5.0}}


def test_the_plan_counts_table_1s_thirty_fine_tunes_and_claim_4s_work_on_the_mechanism_model(projection):
    plan = projection.read_plan()
    assert (plan.seeds, plan.n, plan.train_examples, plan.trained_arms, plan.system_prompts) == (5, 400, 600, 6, 5)
    units = projection.plan_units(plan)
    assert units.behaviour_finetunes == 30 and units.mechanism_finetunes == 20
    assert units.behaviour_prompts == (7 + 5 + 1) * 400 * 5 and units.mechanism_prompts == (6 * 5 + 2) * 400 + 10 * 600


def test_each_unit_is_priced_from_the_figures_with_the_profiles_own_sampler(projection):
    out = projection.project(cost_figures(), gpus=8)
    steps = 38 * 3  # 600 examples in batches of 16, 3 epochs
    assert out["per_unit"]["behaviour_finetune_s"] == pytest.approx(steps * 1.0 + 2.0)
    assert out["per_unit"]["behaviour_sampling_s_per_batch"] == 64.0  # not the variant's faster 32 s: not the profile's
    # 8 samplings of 400 per seed (7 arms + the preamble) in 4 batches of 128, and 2,000 system-prompt answers in 16
    assert out["parts_s"]["behaviour sampling (generate)"] == pytest.approx(5 * (8 * 4 + 16) * 64.0)
    assert out["one_gpu_s"] == pytest.approx(sum(out["parts_s"].values()))
    many = out["many_gpus"]
    assert many["seconds"] == pytest.approx(max(out["one_gpu_s"] / 8, many["longest_chain_s"]))


def test_a_cost_file_without_a_needed_phase_says_which_and_how_to_get_it(tmp_path):
    figures = cost_figures()
    del figures["finetune_mechanism_real_shape"]
    path = tmp_path / "cost.json"
    path.write_text(json.dumps(figures))
    done = subprocess.run([sys.executable, "bench/paper_projection.py", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0 and "finetune_mechanism_real_shape" in done.stderr and "--variants" in done.stderr
