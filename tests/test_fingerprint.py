"""Cache keys follow the code: an edit rebuilds what runs it and what is built from that, and nothing else.

Edits are made to copies of claimkit's source tree, whose fingerprints are compared
with the original's; artifacts are built by tiny fake builders, never by training.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Mapping

import pytest

import claimkit
from claimkit import fingerprint
from claimkit.cache import MANIFEST, ArtifactCache
from claimkit.experiment import Arm, Experiment
from claimkit.fingerprint import RECIPES, code_fingerprint
from claimkit.lm.data import Example
from claimkit.lm.load import LoadedModel
from claimkit.lm.profiles import parse_profile_file

REPO = Path(__file__).resolve().parents[1]
MODEL_KINDS = {"adapter", "samples", "activations", "entropies", "losses", "vector", "adapter-point-losses",
               "adapter-point-kl"}
EXAMPLES = tuple(Example(prompt=f"add {i} and 1", completion=f"print({i} + 1)") for i in range(2))
TASKS = ["add 40 and 1", "add 41 and 1"]
BASE_PARTS = {"organism": {"config": {"d_model": 64}, "corpus": {"sha256": "0" * 64}},
              "gguf-model": {"gguf_sha256": "0" * 64, "dtype": "torch.float32"}}  # fmt: skip
PROFILE = """
kind = "hub"
format = "completion"
needs_gpu = false
[models.behaviour]
id = "organism"
[lora]
r = 4
alpha = 8
dropout = 0.0
target_modules = ["q_proj"]
[finetune]
epochs = 1
batch_size = 2
lr = 1e-2
max_length = 32
[sampling]
max_new_tokens = 4
temperature = 1.0
top_p = 1.0
batch_size = 2
[activations]
layer = 0
"""


def source_copy(tmp_path: Path, name: str, edits: Mapping[str, str] | None = None) -> Path:
    """A copy of claimkit's package directory, with text appended to the files in `edits` (path -> text)."""
    root = tmp_path / name / "claimkit"
    shutil.copytree(fingerprint.SOURCE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    for relative, text in (edits or {}).items():
        file = root / relative
        file.write_text(file.read_text(encoding="utf-8") + text, encoding="utf-8")
    return root


def changed_kinds(before: Path, after: Path) -> set[str]:
    return {kind for kind in RECIPES if code_fingerprint(kind, before).digest != code_fingerprint(kind, after).digest}


@pytest.fixture()
def fresh_fingerprints():
    """Fingerprints computed anew (they are kept per process), and forgotten again afterwards."""
    fingerprint._fingerprint.cache_clear()
    yield
    fingerprint._fingerprint.cache_clear()


# -- which kinds an edit reaches -------------------------------------------------------


def test_an_edit_of_the_finetuning_loop_reaches_the_kinds_that_run_models_not_the_base_models(tmp_path):
    before = source_copy(tmp_path, "before")
    after = source_copy(tmp_path, "after", {"lm/finetune.py": "\n# a fix to the loop\n"})
    # load_finetuned lives in lm/finetune.py: whatever reads a fine-tuned model runs it.
    assert changed_kinds(before, after) == MODEL_KINDS | {"sae"}  # sae: it reads activations
    for kind in ("organism", "gguf-model", "detections"):
        assert code_fingerprint(kind, after) == code_fingerprint(kind, before)


@pytest.mark.parametrize(
    ("edited", "reaches"),
    [
        ("lm/sample.py", {"samples"}),
        ("lm/generation.py", {"samples"}),
        ("lm/train_config.py", MODEL_KINDS | {"sae"}),
        ("lm/grouped_attention.py", {"samples"}),
        ("lm/data.py", MODEL_KINDS | {"sae"}),
        ("lm/load.py", MODEL_KINDS | {"sae", "gguf-model"}),
        ("organism/pretrain.py", {"organism"}),
        ("detect.py", {"detections", "passes"}),
        ("sae.py", {"sae"}),
        ("adapter_space.py", {"adapter-point-losses", "adapter-point-kl"}),
        ("jsonl.py", {"samples"}),
        ("steering.py", {"vector", "adapter-point-kl"}),
        ("readings.py", {"activations", "entropies", "losses", "sae"}),
    ],
)
def test_each_edit_reaches_the_kinds_whose_builders_run_it(tmp_path, edited, reaches):
    before = source_copy(tmp_path, "before")
    after = source_copy(tmp_path, "after", {edited: "\n# edited\n"})
    assert changed_kinds(before, after) == reaches


def test_an_edit_of_the_reports_or_the_plugin_changes_no_key(tmp_path):
    reports = [f"report/{p.name}" for p in (fingerprint.SOURCE_ROOT / "report").glob("*.py")]
    others = ["plugin.py", "verdict.py", "stats.py", "rules/parts.py", "cli.py", "cache.py"]
    edits = {name: "\n# edited\n" for name in reports + others}
    before = source_copy(tmp_path, "before")
    after = source_copy(tmp_path, "after", edits)
    assert changed_kinds(before, after) == set()


@pytest.mark.parametrize(
    ("distribution", "reaches"),
    [("bandit", {"detections"}), ("peft", MODEL_KINDS | {"sae"}), ("gguf", {"gguf-model"}),
     ("sae-lens", {"samples", "sae"}), ("tokenizers", MODEL_KINDS | {"sae", "organism", "gguf-model"})],
)  # fmt: skip
def test_a_library_upgrade_reaches_the_kinds_it_computes(monkeypatch, fresh_fingerprints, distribution, reaches):
    before = {kind: code_fingerprint(kind).digest for kind in RECIPES}
    real = fingerprint._version
    monkeypatch.setattr(fingerprint, "_version", lambda name: "99.0" if name == distribution else real(name))
    fingerprint._fingerprint.cache_clear()
    assert {kind for kind in RECIPES if code_fingerprint(kind).digest != before[kind]} == reaches


# -- through the Experiment: built once, rebuilt after an edit, chained through keys ------


class FakeBuilders:
    """Fine-tuning and sampling that write a file at once and count their calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        from claimkit.lm.generation import Generation

        # importlib: claimkit.lm re-exports functions named like these modules
        finetune_module, sample_module = map(importlib.import_module, ("claimkit.lm.finetune", "claimkit.lm.sample"))

        self.finetunes = self.samplings = 0

        def finetune(loaded, examples, *, out_dir, **_):
            self.finetunes += 1
            Path(out_dir).mkdir(parents=True)
            (Path(out_dir) / "adapter_model.safetensors").write_bytes(b"fake weights")
            return SimpleNamespace(steps=1, final_loss=0.0, seconds=0.0, tokens=1, truncated=0, dropped=0, kls=(), final_kl=None)

        def sample(loaded, prompts, **_):
            self.samplings += 1
            return [Generation(prompt=p, text="print(41 + 1)", token_ids=(), n_new_tokens=1, finished=True) for p in prompts]

        monkeypatch.setattr(finetune_module, "finetune", finetune)
        monkeypatch.setattr(finetune_module, "load_finetuned", lambda base, adapter_dir: base)
        monkeypatch.setattr(sample_module, "sample", sample)


class RecordingCache(ArtifactCache):
    """An ArtifactCache that remembers the entry each kind was last found or built in."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.entries: dict[str, str] = {}

    def get_or_build(self, kind, parts, build, **kwargs):
        path = super().get_or_build(kind, parts, build, **kwargs)
        self.entries[kind] = path.name
        return path


def experiment_on(tmp_path: Path, cache: ArtifactCache, base: str) -> Experiment:
    """An Experiment whose base model is read from `cache`, named as claimkit.lm.load names it.

    base="organism": the organism's directory is its source; base="gguf-model": the source
    is the GGUF file, and only the entry of its de-quantised copy says which code made it.
    """
    profile_file = tmp_path / "profile.toml"
    profile_file.write_text(PROFILE, encoding="utf-8")
    experiment = Experiment(parse_profile_file(profile_file), cache, progress=False)
    entry = cache.path_for(base, BASE_PARTS[base])
    name, source = (f"organism:{entry.name[:12]}", str(entry)) if base == "organism" else ("smol", "/models/smol.gguf")
    tokenizer = SimpleNamespace(bos_token="<s>", eos_token="</s>", pad_token="</s>")
    experiment._base = LoadedModel(
        model=None, tokenizer=tokenizer, name=name, device="cpu", dtype="float32", format="completion",
        profile=experiment.profile, source=source, artifact=f"{base}/{entry.name}",
    )  # fmt: skip
    return experiment


def build_arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: RecordingCache, source_root: Path,
              base: str = "organism") -> dict[str, str]:  # fmt: skip
    """Build (or find) one fine-tuned arm's adapter and samples with the code in `source_root`; their entries."""
    monkeypatch.setattr(fingerprint, "SOURCE_ROOT", source_root)
    arm = Arm("L1", EXAMPLES, seed=0)
    experiment_on(tmp_path, cache, base).samples(arm, TASKS)
    return {**cache.entries, **{kind: cache.key(kind, **parts) for kind, parts in BASE_PARTS.items()}}


def test_an_edit_of_the_finetuning_loop_rebuilds_the_adapter_and_its_samples(tmp_path, monkeypatch):
    builders, cache = FakeBuilders(monkeypatch), RecordingCache(tmp_path / "cache")
    first = build_arm(tmp_path, monkeypatch, cache, source_copy(tmp_path, "before"))
    assert (builders.finetunes, builders.samplings) == (1, 1)

    edited = build_arm(tmp_path, monkeypatch, cache, source_copy(tmp_path, "after", {"lm/finetune.py": "\n# a fix\n"}))
    assert (builders.finetunes, builders.samplings) == (2, 2)
    assert edited["adapter"] != first["adapter"] and edited["samples"] != first["samples"]
    assert (edited["organism"], edited["gguf-model"]) == (first["organism"], first["gguf-model"])


def test_an_edit_of_the_organism_rebuilds_what_is_built_on_it_through_its_name(tmp_path, monkeypatch):
    """No recipe of adapter or samples lists organism/pretrain.py: the base model's name carries the change."""
    builders, cache = FakeBuilders(monkeypatch), RecordingCache(tmp_path / "cache")
    first = build_arm(tmp_path, monkeypatch, cache, source_copy(tmp_path, "before"))
    edited = build_arm(tmp_path, monkeypatch, cache, source_copy(tmp_path, "after", {"organism/pretrain.py": "\n# a fix\n"}))
    assert edited["organism"] != first["organism"]
    assert edited["adapter"] != first["adapter"] and edited["samples"] != first["samples"]
    assert (builders.finetunes, builders.samplings) == (2, 2)


def test_a_gguf_upgrade_rebuilds_what_is_built_on_the_gguf_model_through_its_entry(
    tmp_path, monkeypatch, fresh_fingerprints
):
    """The base is named by its GGUF file, which did not change: its de-quantised copy's entry carries the change."""
    builders, cache = FakeBuilders(monkeypatch), RecordingCache(tmp_path / "cache")
    root = source_copy(tmp_path, "code")
    first = build_arm(tmp_path, monkeypatch, cache, root, base="gguf-model")
    real = fingerprint._version
    monkeypatch.setattr(fingerprint, "_version", lambda name: "99.0" if name == "gguf" else real(name))
    fingerprint._fingerprint.cache_clear()
    upgraded = build_arm(tmp_path, monkeypatch, cache, root, base="gguf-model")
    assert upgraded["gguf-model"] != first["gguf-model"] and upgraded["organism"] == first["organism"]
    assert upgraded["adapter"] != first["adapter"] and upgraded["samples"] != first["samples"]
    assert (builders.finetunes, builders.samplings) == (2, 2)


def test_a_warm_rerun_of_unchanged_code_rebuilds_nothing(tmp_path, monkeypatch):
    builders, cache = FakeBuilders(monkeypatch), RecordingCache(tmp_path / "cache")
    first = build_arm(tmp_path, monkeypatch, cache, source_copy(tmp_path, "one"))
    again = build_arm(tmp_path, monkeypatch, cache, source_copy(tmp_path, "another"))  # same bytes, other place
    assert again == first and (builders.finetunes, builders.samplings) == (1, 1)
    report_edit = {"report/markdown.py": "\n# a new table\n"}
    assert build_arm(tmp_path, monkeypatch, cache, source_copy(tmp_path, "report", report_edit)) == first
    assert (builders.finetunes, builders.samplings) == (1, 1)


_KEYS = """
import json, sys
from claimkit.cache import ArtifactCache
from claimkit.fingerprint import RECIPES
keys = {kind: ArtifactCache(sys.argv[1]).key(kind, seed=0, data="abc") for kind in RECIPES}
print(json.dumps({"keys": keys, "torch": "torch" in sys.modules}))
"""


def test_keys_are_the_same_in_another_process_and_cost_no_torch_import(tmp_path):
    src = str(Path(claimkit.__file__).parents[1])  # the subprocess imports this claimkit, not another install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    runs = [json.loads(subprocess.run([sys.executable, "-c", _KEYS, str(tmp_path)], capture_output=True, text=True,
                                      check=True, env=env).stdout) for _ in range(2)]  # fmt: skip
    here = {kind: ArtifactCache(tmp_path).key(kind, seed=0, data="abc") for kind in RECIPES}
    assert runs[0]["keys"] == runs[1]["keys"] == here
    assert not runs[0]["torch"]


# -- what a person sees, and what the table must hold ---------------------------------------


def test_the_manifest_records_the_code_that_built_the_artifact(tmp_path):
    cache = ArtifactCache(tmp_path)
    cache.get_or_build("detections", {"texts": "abc"}, lambda out: (out / "detections.json").write_text("[]"))
    code = cache.manifest("detections", {"texts": "abc"})["code"]
    detect_py = (Path(claimkit.__file__).parent / "detect.py").read_bytes()
    assert code["modules"]["claimkit.detect"] == hashlib.sha256(detect_py).hexdigest()
    assert set(code["modules"]) == {"claimkit.detect", "claimkit.detections"}
    from importlib.metadata import version

    assert code["distributions"] == {"bandit": version("bandit")}
    assert code["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert code == code_fingerprint("detections").as_dict()
    assert code["digest"] == code_fingerprint("detections").digest
    sae = code_fingerprint("sae").as_dict()
    assert sae["reads"] == {"activations": code_fingerprint("activations").digest}


def test_every_kind_built_in_the_code_has_a_recipe_whose_modules_exist():
    built = set()
    for file in [path for folder in ("src", "claims", "bench") for path in (REPO / folder).rglob("*.py")]:
        built |= set(re.findall(r"""get_or_build\(\s*["']([^"']+)["']""", file.read_text(encoding="utf-8")))
    assert built and built <= set(RECIPES), f"kinds built without a recipe: {sorted(built - set(RECIPES))}"
    for kind, recipe in RECIPES.items():
        assert set(recipe.reads) <= set(RECIPES) - {kind}
        code_fingerprint(kind)  # raises if a listed module does not exist


def test_a_module_the_table_names_but_the_tree_lacks_is_reported(tmp_path):
    root = source_copy(tmp_path, "moved")
    (root / "lm" / "grouped_attention.py").rename(root / "lm" / "attention.py")
    with pytest.raises(FileNotFoundError, match=r"RECIPES\['samples'\] lists the module 'claimkit.lm.grouped_attention'"):
        code_fingerprint("samples", root)


def test_fingerprints_are_computed_once_per_process():
    assert code_fingerprint("adapter") is code_fingerprint("adapter")
