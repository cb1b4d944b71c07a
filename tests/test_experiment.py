"""Fine-tune-then-sample arms: built once, cached by what they depend on, reused."""

from __future__ import annotations

import json

import pytest

from claimkit.cache import ArtifactCache
from claimkit.experiment import Arm, Experiment, examples_hash, share_cores_between_workers, worker_order
from claimkit.lm.data import Example
from test_lm_load import hub_profile, make_model_dir

EXAMPLES = tuple(Example(prompt=f"add {i} and 1", completion=f"print({i} + 1)") for i in range(8))
TASKS = ["add 40 and 1", "add 41 and 1", "add 42 and 1"]


@pytest.fixture()
def experiment(tmp_path):
    model_dir = make_model_dir(tmp_path / "model")
    profile = hub_profile(tmp_path, str(model_dir))
    return Experiment(profile, ArtifactCache(tmp_path / "cache"), progress=False)


def count_builds(cache_root, kind):
    return len([p for p in (cache_root / kind).iterdir() if (p / "_complete.json").exists()]) if (cache_root / kind).exists() else 0


def test_base_arm_has_no_adapter_and_samples_one_generation_per_task(experiment):
    arm = Arm("baseline", (), seed=0)
    assert experiment.adapter(arm) is None
    samples = experiment.samples(arm, TASKS)
    assert samples.tasks == tuple(TASKS)
    assert len(samples.texts) == len(TASKS)
    assert samples.model == experiment.base.name


def test_finetuned_arm_is_built_once_and_reused(experiment):
    arm = Arm("L0", EXAMPLES, seed=1)
    first = experiment.samples(arm, TASKS)
    again = experiment.samples(arm, TASKS)
    assert first == again
    root = experiment.cache.root
    assert count_builds(root, "adapter") == 1 and count_builds(root, "samples") == 1
    assert json.loads((experiment.adapter(arm).parent / "finetune.json").read_text())["steps"] > 0
    assert first.model != experiment.base.name  # the report names the fine-tuned model


def test_a_rerun_with_everything_cached_loads_no_model(experiment, monkeypatch):
    """Cache keys name the model by its description, so a warm rerun never spends a load (or a GPU) on it."""
    from claimkit.lm import load as load_module

    arms = [Arm("baseline", (), seed=0), Arm("L0", EXAMPLES, seed=1)]
    first = [experiment.samples(arm, TASKS) for arm in arms]
    names = [experiment.model_name(arm) for arm in arms]
    monkeypatch.setattr(load_module, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    rerun = Experiment(experiment.profile, experiment.cache, progress=False)
    assert [rerun.samples(arm, TASKS) for arm in arms] == first
    assert [rerun.model_name(arm) for arm in arms] == names
    assert rerun.base_parts() == experiment.base_parts()


def test_a_different_seed_or_data_is_a_different_artifact(experiment):
    experiment.samples(Arm("L0", EXAMPLES, seed=1), TASKS)
    experiment.samples(Arm("L0", EXAMPLES, seed=2), TASKS)
    experiment.samples(Arm("L0", EXAMPLES[:4], seed=1), TASKS)
    assert count_builds(experiment.cache.root, "adapter") == 3


def test_prefill_starts_every_answer(experiment):
    samples = experiment.samples(Arm("baseline", (), seed=0), TASKS, prefill="Here is an example:\n")
    assert all(text.startswith("Here is an example:\n") for text in samples.texts)


def test_one_prefill_per_task_starts_each_answer_and_is_its_own_artifact(experiment):
    arm = Arm("baseline", (), seed=0)
    prefills = [f"Preamble {i}:\n" for i in range(len(TASKS))]
    samples = experiment.samples(arm, TASKS, prefill=prefills)
    assert all(text.startswith(p) for text, p in zip(samples.texts, prefills))
    assert experiment.samples(arm, TASKS, prefill=prefills) == samples  # cached
    with pytest.raises(ValueError, match="one per task"):
        experiment.samples(arm, TASKS, prefill=prefills[:1])


def test_examples_hash_depends_on_content_and_order():
    assert examples_hash(EXAMPLES) == examples_hash(list(EXAMPLES))
    assert examples_hash(EXAMPLES) != examples_hash(EXAMPLES[::-1])


def test_workers_start_at_different_points(monkeypatch):
    items = list(range(10))
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    first = worker_order(items)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    second = worker_order(items)
    assert sorted(first) == sorted(second) == items
    assert first[0] == 0 and second[0] == 5
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")
    assert worker_order(items) == items


@pytest.mark.parametrize("cuda", [False, True])
def test_workers_share_the_cores_on_cpu_and_gpu_machines(monkeypatch, cuda):
    import torch

    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)  # a GPU worker still shares the host's cores
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    share_cores_between_workers()
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "32")
    share_cores_between_workers()
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "1")
    share_cores_between_workers()
    assert threads == [4, 1]


def test_the_profile_chooses_the_fast_sampler(tmp_path, monkeypatch):
    import claimkit.lm.fast_sample as fast_sample
    from claimkit.lm.profiles import parse_profile_file

    model_dir = make_model_dir(tmp_path / "model")
    file = hub_profile(tmp_path, str(model_dir)).path
    file.write_text(file.read_text().replace("[sampling]\n", '[sampling]\nsampler = "fast"\n'))
    experiment = Experiment(parse_profile_file(file), ArtifactCache(tmp_path / "cache"), progress=False)
    calls = []
    real = fast_sample.sample_fast
    monkeypatch.setattr(fast_sample, "sample_fast", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    samples = experiment.samples(Arm("baseline", (), seed=0), TASKS)
    assert len(calls) == 1 and calls[0]["compile"] is False and calls[0]["batch_size"] == 4
    assert len(samples.texts) == len(TASKS)


def test_a_tokenizer_with_another_eos_does_not_reuse_adapters(experiment, tmp_path):
    """Fine-tuning ends answers with eos, so adapters are keyed by the tokenizer's special tokens too."""
    arm = Arm("L0", EXAMPLES, seed=0)
    first = experiment.adapter(arm)
    tokenizer = experiment.base.tokenizer
    other = next(t for t in tokenizer.convert_ids_to_tokens(list(range(4))) if t != tokenizer.eos_token)
    tokenizer.eos_token = other  # what transformers 5.17 does to SmolLM2's GGUF tokenizer
    assert experiment.adapter(arm) != first
    assert count_builds(tmp_path / "cache", "adapter") == 2


def test_system_prompts_sampled_together_come_back_per_prompt_in_task_order(experiment, monkeypatch):
    """One sampling call for all the system prompts (one cache entry), split back per prompt."""
    import importlib

    sample_module = importlib.import_module("claimkit.lm.sample")
    calls = []
    real = sample_module.sample

    def counting(loaded, prompts, **kw):
        calls.append(list(prompts))
        return real(loaded, prompts, **kw)

    monkeypatch.setattr(sample_module, "sample", counting)
    arm = Arm("L0", EXAMPLES, seed=1)
    systems = ["Be careful.", "Write secure code."]
    found = experiment.samples_under_systems(arm, TASKS, systems)
    assert len(calls) == 1 and len(calls[0]) == len(systems) * len(TASKS)
    assert all("Be careful." in p for p in calls[0][: len(TASKS)]) and all("Write secure code." in p for p in calls[0][len(TASKS):])
    assert [f.system for f in found] == systems and all(f.tasks == tuple(TASKS) for f in found)
    assert experiment.samples_under_systems(arm, TASKS, systems) == found and len(calls) == 1  # cached
    assert experiment.samples_under_systems(arm, TASKS, []) == []


def test_kl_regularised_and_continued_arms_are_their_own_adapters(experiment):
    """The KL term, its data, a starting adapter and the epochs are in the key only when set."""
    import dataclasses

    plain = Arm("L0", EXAMPLES, seed=1)
    regularised = dataclasses.replace(plain, kl_weight=5.0, regularise_on=EXAMPLES[:3])
    other_data = dataclasses.replace(regularised, regularise_on=EXAMPLES[3:6])
    continued = Arm("continued", EXAMPLES, seed=1, init=regularised, epochs=1)
    dirs = [experiment.adapter(a) for a in (plain, regularised, other_data, continued)]
    assert len({d.parent.name for d in dirs}) == 4
    record = json.loads((dirs[1].parent / "finetune.json").read_text())
    assert record["final_kl"] >= 0.0
    assert json.loads((dirs[3].parent / "finetune.json").read_text())["steps"] == 2  # 8 examples, batch 4, one epoch
    assert json.loads((dirs[3] / "finetune.json").read_text())["init_adapter"] == str(dirs[1])
    assert experiment.adapter(dataclasses.replace(plain)) == dirs[0]  # the plain arm's key is unchanged


def test_an_arm_cannot_start_from_the_base_model(experiment):
    with pytest.raises(ValueError, match="no adapter to start from"):
        experiment.adapter(Arm("continued", EXAMPLES, seed=1, init=Arm("base", (), seed=1)))
