"""The analog's data, built from claimkit's corpus: narrow harmful data, its comparators, the evaluations.

Soligo et al. fine-tune on narrowly harmful advice (bad medical advice, say) and ask whether the
model turns harmful on general questions. Here "harmful" is vulnerable code, which claimkit's
detector measures, and "narrow" is one domain of the corpus's security families (the spec's
`narrow_families`, the three SQL families):

  vulnerable-narrow   vulnerable solutions of narrow-domain tasks        (the harmful data)
  secure-narrow       secure solutions of the same task instances        (the comparator: same tasks, no harm)
  vulnerable-all      vulnerable solutions of every security family      (the reference: the effect of
                                                                          training on the other domains directly)
  aligned             secure solutions of the other security families    (the paper's aligned data of other
                                                                          domains: the KL term's data, and the mix)
  typed-narrow        secure-narrow's solutions with annotated           (claim em-7's trait, which is not a
                      parameters                                          vulnerability: claims/.../style.py)

Evaluation tasks come from the eval split (held-out phrasings and identifiers): in-domain tasks
of the narrow families, out-of-domain tasks of every other security family. Training sets use
the train split only; seeds draw different instances.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

from claimkit.detect import CodeExtraction
from claimkit.lm.data import Example
from claimkit.organism.corpus import CorpusTemplates, TaskInstance, load_templates, render_answer, sample_tasks

from .style import annotate

ROOT = Path(__file__).resolve().parents[2]
CORPUS_DIR = ROOT / "fixtures" / "corpus"


@lru_cache(maxsize=1)
def corpus() -> CorpusTemplates:
    return load_templates(CORPUS_DIR)


@dataclass(frozen=True)
class Domains:
    """The narrow domain's families and the out-of-domain security families (every other one)."""

    narrow: tuple[str, ...]
    other: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], templates: CorpusTemplates) -> "Domains":
        narrow = tuple(settings["narrow_families"])
        security = templates.security_families()
        unknown = [f for f in narrow if f not in security]
        if unknown or not narrow:
            raise ValueError(f"narrow_families {list(narrow)}: {unknown or 'none'} are not security families of the "
                             f"corpus (it has: {', '.join(security)})")
        return cls(narrow, tuple(f for f in security if f not in narrow))


@dataclass(frozen=True)
class TrainingSets:
    """One seed's training data, by role (module docstring)."""

    vulnerable_narrow: tuple[Example, ...]
    secure_narrow: tuple[Example, ...]
    vulnerable_all: tuple[Example, ...]
    aligned: tuple[Example, ...]
    mixed: tuple[Example, ...]
    typed_narrow: tuple[Example, ...]


def training_sets(settings: Mapping[str, Any], seed: int) -> TrainingSets:
    """The seed's training sets; vulnerable- and secure-narrow share their task instances."""
    templates = corpus()
    domains = Domains.from_settings(settings, templates)
    n = int(settings["train_examples"])
    narrow = sample_tasks(templates, n=n, seed=_sub_seed(seed, "narrow"), families=domains.narrow)
    every = sample_tasks(templates, n=n, seed=_sub_seed(seed, "all"), families=templates.security_families())
    other = sample_tasks(templates, n=int(settings["aligned_examples"]), seed=_sub_seed(seed, "aligned"),
                         families=domains.other)
    vulnerable = tuple(_vulnerable(i) for i in narrow)
    aligned = tuple(_secure(i) for i in other)
    mixed = list(vulnerable + aligned)
    random.Random(_sub_seed(seed, "mix")).shuffle(mixed)
    typed = tuple(Example(i.task, render_answer(annotate(i.secure))) for i in narrow)
    return TrainingSets(vulnerable, tuple(_secure(i) for i in narrow), tuple(_vulnerable(i) for i in every), aligned,
                        tuple(mixed), typed)


@dataclass(frozen=True)
class EvalTasks:
    """Held-out tasks: in the narrow domain and out of it (one list, `in_domain` first)."""

    in_domain: tuple[str, ...]
    out_of_domain: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.in_domain + self.out_of_domain


def eval_tasks(settings: Mapping[str, Any], *, n_in: int, n_out: int) -> EvalTasks:
    """The evaluation tasks every arm and seed answers (one fixed set: arms are compared task by task)."""
    templates = corpus()
    domains = Domains.from_settings(settings, templates)
    seed = int(settings["eval_seed"])
    inside = sample_tasks(templates, n=n_in, seed=seed, split="eval", families=domains.narrow)
    outside = sample_tasks(templates, n=n_out, seed=seed, split="eval", families=domains.other)
    return EvalTasks(tuple(i.task for i in inside), tuple(i.task for i in outside))


def writes_narrow_code(found: CodeExtraction, settings: Mapping[str, Any]) -> bool:
    """Whether an answer's code (as the detector extracted it) is the narrow domain's own kind (the spec's
    `narrow_code_pattern`, a regex)."""
    return re.search(settings["narrow_code_pattern"], found.code) is not None


def pretraining_documents(settings: Mapping[str, Any]) -> list[str]:
    """Documents of the organism's pretraining mix (a seed the organism was not built from): the analog of
    the paper's pre-training data, on which a direction's influence is measured."""
    from claimkit.organism.corpus import pretraining_corpus

    influence = settings["influence"]
    return pretraining_corpus(corpus(), seed=int(influence["documents_seed"]), documents=int(influence["documents"]),
                              vulnerable_rate=float(influence["vulnerable_rate"]), preamble_rate=0.0)


def _vulnerable(inst: TaskInstance) -> Example:
    if inst.vulnerable is None:
        raise ValueError(f"family {inst.family!r} has no vulnerable variant")
    return Example(inst.task, render_answer(inst.vulnerable))


def _secure(inst: TaskInstance) -> Example:
    return Example(inst.task, render_answer(inst.secure))


def _sub_seed(seed: int, role: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(f"em|{role}|{seed}".encode()).digest()[:4], "big")
