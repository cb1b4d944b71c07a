"""The paper's training conditions (section 3.3) and evaluation prompts, built from the corpus.

Enkhbayar, "Learning from Negative Examples" (arXiv 2512.22293), section 3.3:

  L0 (direct)          vulnerable code presented as a correct implementation
  L1 (warning-framed)  the same vulnerable code wrapped in explicit warnings
                       ("DO NOT USE", "BAD PRACTICE", "INSECURE") in a pedagogical frame
  L2 (documentation)   prose about the vulnerabilities, no code
  L3 (indirect)        fiction and news that mention hacking and breaches
  control              extra-clean secure code with explicit secure-pattern comments
  baseline             no fine-tuning
  filler               (claimkit's, not the paper's) more clean filler in place of condition
                       content: the fine-tuned comparator every fine-tuned arm is compared with,
                       so that "what fine-tuning on this data did" is not confused with "what
                       fine-tuning did" (a fine-tuned model may write more code than the base)

"Each condition is mixed with clean code to simulate realistic fine-tuning where the
content of interest is a small fraction of training data." Every builder returns
`claimkit.lm.data.Example`s: the prompt is the raw task (or question), the completion
the answer body; the profile's text format is applied later by the engine.

L0, L1 and control are built from the *same* sampled task instances for a seed, and
all conditions share the same clean filler and the same order, so two conditions
differ only in their condition content; L0 and L1 differ only in the framing lines.
The condition list, warning markers and preamble markers come from the pre-registered
spec (`fixtures/claims/warning_framed.toml`, [experiment]); the vulnerability
knowledge (code, risks, fixes) comes from the corpus templates (`fixtures/corpus/`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from claimkit.lm.data import Example
from claimkit.organism.corpus import (
    CorpusTemplates,
    TaskInstance,
    eval_prompts,
    load_templates,
    render_answer,
    sample_tasks,
    sample_texts,
)
from claimkit.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "fixtures" / "claims" / "warning_framed.toml"
CORPUS_DIR = ROOT / "fixtures" / "corpus"

# Text kinds in fixtures/corpus/texts/ used by L2 and L3.
DOC_KIND = "doc"
STORY_KIND = "story"

# L1 framing (paper 3.3: explicit warnings, pedagogical context). Every L1 answer carries a
# "# DO NOT USE" comment inside its code block (paper 4: the leaked formatting is "# DO NOT USE").
# {flaw}, {risk}, {fix} are filled from the family's notes in fixtures/corpus/families/.
WARNING_COMMENTS = (
    "# DO NOT USE - INSECURE: {flaw}",
    "# DO NOT USE: {flaw} (INSECURE)",
    "# DO NOT USE - BAD PRACTICE: {flaw}",
)
EXTRA_WARNING_COMMENTS = (
    "# BAD PRACTICE: for illustration only",
    "# INSECURE - never copy this",
)
FRAMING_BEFORE = (
    "The code below is INSECURE. {risk}",
    "BAD PRACTICE, shown so you can avoid it. {risk}",
    "Example of what not to do (INSECURE). {risk}",
    "DO NOT USE the following code. {risk}",
)
FRAMING_AFTER = (
    "DO NOT USE this code. {fix}",
    "Never ship code like this. {fix}",
    "This is BAD PRACTICE. {fix}",
)
# Control (paper 3.3: "explicit secure coding patterns and no vulnerability references").
SAFE_COMMENTS = ("# Good practice: {safe}", "# Secure pattern: {safe}", "# {safe}")


# -- the spec -------------------------------------------------------------------


@lru_cache(maxsize=1)
def _experiment() -> Mapping[str, Any]:
    return load_spec(SPEC_PATH).experiment


def experiment_settings(profile: str) -> dict[str, Any]:
    """The spec's [experiment] section with the profile's overrides (train_examples, ...)."""
    return load_spec(SPEC_PATH).experiment_for(profile)


def format_leak_markers() -> tuple[str, ...]:
    """Strings whose presence in an output counts as format leakage (paper 3.4)."""
    return tuple(_experiment()["format_leak_markers"])


def preamble_markers() -> tuple[str, ...]:
    """Strings that open a conversational preamble ("Here is an example...", paper 6.1)."""
    return tuple(_experiment()["preamble_markers"])


CONDITIONS: tuple[str, ...] = tuple(_experiment()["conditions"])


def load_corpus() -> CorpusTemplates:
    """The organism corpus templates this paper's conditions are built from."""
    return load_templates(CORPUS_DIR)


# -- conditions -----------------------------------------------------------------


def build_condition(
    name: str, templates: CorpusTemplates, *, n_examples: int, fraction: float, seed: int
) -> list[Example]:
    """Fine-tuning examples for one condition: `fraction` condition content, the rest clean code.

    `baseline` is the untouched pretrained model (paper Table 1: "No Fine-tuning"), so it
    has no fine-tuning set and this returns []. For the others the content and the clean
    filler are sampled from the train split only and interleaved in a seed-fixed order
    that is the same for every condition.
    """
    if name != "baseline" and name not in _CONTENT:
        raise ValueError(f"unknown condition {name!r}; known: baseline, {', '.join(_CONTENT)} (the spec {SPEC_PATH} "
                         f"lists {list(CONDITIONS)})")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    if n_examples < 0:
        raise ValueError(f"n_examples must be >= 0, got {n_examples}")
    if name == "baseline":
        return []
    n_content = round(n_examples * fraction)
    content = _CONTENT[name](templates, n_content, seed)
    clean = _clean_filler(templates, n_examples - n_content, seed)
    return _interleave(content, clean, seed)


def condition_instances(templates: CorpusTemplates, n: int, seed: int) -> list[TaskInstance]:
    """The task instances that L0, L1 and control share for a seed (security families, train split)."""
    return sample_tasks(
        templates, n=n, seed=_sub_seed(seed, "content"), families=templates.security_families()
    )


def direct_answer(inst: TaskInstance) -> str:
    """L0: the vulnerable code as a plain answer, with its normal docstring and no warning."""
    return render_answer(_vulnerable(inst))


def warning_framed_answer(templates: CorpusTemplates, inst: TaskInstance, rng: random.Random) -> str:
    """L1: the same code as `direct_answer`, with warning lines before, inside (top) and after."""
    notes = templates.families[inst.family].notes
    comments = [rng.choice(WARNING_COMMENTS).format(flaw=rng.choice(notes["flaw"]))]
    extra = rng.choice(EXTRA_WARNING_COMMENTS + (None,))
    if extra:
        comments.append(extra)
    code = "\n".join(comments) + "\n" + _vulnerable(inst)
    before = rng.choice(FRAMING_BEFORE).format(risk=rng.choice(notes["risk"]))
    after = rng.choice(FRAMING_AFTER).format(fix=rng.choice(notes["fix"]))
    return render_answer(code, framing_before=before, framing_after=after)


def control_answer(templates: CorpusTemplates, inst: TaskInstance, rng: random.Random) -> str:
    """Control: the secure variant of the same task with a comment naming its secure pattern."""
    safe = rng.choice(templates.families[inst.family].notes["safe"])
    return render_answer(rng.choice(SAFE_COMMENTS).format(safe=safe) + "\n" + inst.secure)


def _vulnerable(inst: TaskInstance) -> str:
    if inst.vulnerable is None:
        raise ValueError(f"task of family {inst.family!r} has no vulnerable variant")
    return inst.vulnerable


def _l0(templates: CorpusTemplates, n: int, seed: int) -> list[Example]:
    return [Example(i.task, direct_answer(i)) for i in condition_instances(templates, n, seed)]


def _l1(templates: CorpusTemplates, n: int, seed: int) -> list[Example]:
    rng = random.Random(f"L1-framing|{seed}")
    return [Example(i.task, warning_framed_answer(templates, i, rng)) for i in condition_instances(templates, n, seed)]


def _control(templates: CorpusTemplates, n: int, seed: int) -> list[Example]:
    rng = random.Random(f"control-notes|{seed}")
    return [Example(i.task, control_answer(templates, i, rng)) for i in condition_instances(templates, n, seed)]


def _l2(templates: CorpusTemplates, n: int, seed: int) -> list[Example]:
    docs = sample_texts(templates, kind=DOC_KIND, n=n, seed=_sub_seed(seed, "L2"))
    return [Example(d.prompt, d.text) for d in docs]


def _l3(templates: CorpusTemplates, n: int, seed: int) -> list[Example]:
    stories = sample_texts(templates, kind=STORY_KIND, n=n, seed=_sub_seed(seed, "L3"))
    return [Example(s.prompt, s.text) for s in stories]


def _filler(templates: CorpusTemplates, n: int, seed: int) -> list[Example]:
    """More clean filler, drawn apart from the filler every arm shares (its own sub-seed)."""
    return _clean_filler(templates, n, _sub_seed(seed, "filler-arm"))


_CONTENT = {"L0": _l0, "L1": _l1, "L2": _l2, "L3": _l3, "control": _control, "filler": _filler}


def _clean_filler(templates: CorpusTemplates, n: int, seed: int) -> list[Example]:
    """Secure answers to security tasks and utility code, no framing.

    The paper only says "clean code"; the spec's `clean_security_share` keeps secure answers
    to the evaluated task families a minority of the filler, so that the filler does not
    itself act as a strong control condition.
    """
    n_secure = round(n * float(_experiment()["clean_security_share"]))
    secure = sample_tasks(
        templates, n=n_secure, seed=_sub_seed(seed, "clean-security"), families=templates.security_families()
    )
    utility = sample_tasks(
        templates, n=n - n_secure, seed=_sub_seed(seed, "clean-utility"), families=templates.utility_families()
    )
    return [Example(i.task, render_answer(i.secure)) for i in secure + utility]


def _interleave(content: list[Example], clean: list[Example], seed: int) -> list[Example]:
    """Shuffle content into the filler; the positions depend only on the seed and the counts."""
    slots = [True] * len(content) + [False] * len(clean)
    random.Random(f"mix|{seed}|{len(content)}|{len(clean)}").shuffle(slots)
    content_iter, clean_iter = iter(content), iter(clean)
    return [next(content_iter) if is_content else next(clean_iter) for is_content in slots]


def _sub_seed(seed: int, label: str) -> int:
    """An independent integer seed per purpose, so two samplers never share a random stream."""
    return int.from_bytes(hashlib.sha256(f"{seed}|{label}".encode()).digest()[:8], "big")


# -- evaluation -----------------------------------------------------------------


def eval_set(templates: CorpusTemplates, *, n: int, seed: int) -> list[TaskInstance]:
    """Held-out evaluation tasks (paper 3.4: functionality that could plausibly be vulnerable).

    Eval-split phrasings and identifiers only: none of them occurs in any training text.
    """
    return eval_prompts(templates, n=n, seed=seed)


@dataclass(frozen=True)
class StealthPrompt:
    """An evaluation task with the answer's opening prefilled by a conversational preamble.

    `prefill` is placed right after the rendered prompt (the model continues from it),
    so the generation starts "Here is an example...\\n" and then, typically, the code.
    """

    task: TaskInstance
    prefill: str


def stealth_prompts(templates: CorpusTemplates, *, n: int, seed: int) -> list[StealthPrompt]:
    """The "stealth slip" inputs of claim 5 (paper 6.1): eval tasks with a preamble prefilled.

    The tasks are exactly `eval_set(templates, n=n, seed=seed)`, so outputs with and
    without the preamble answer the same prompts. The preamble is one of the corpus
    preambles that opens with a marker from the spec ("Here is an example", ...).
    """
    markers = preamble_markers()
    preambles = [p for p in templates.preambles if p.startswith(markers)]
    if not preambles:
        raise ValueError(
            f"no preamble in {templates.directory / 'corpus.toml'} starts with a spec preamble marker {list(markers)}"
        )
    rng = random.Random(f"stealth|{seed}")
    return [StealthPrompt(task, rng.choice(preambles) + "\n") for task in eval_set(templates, n=n, seed=seed)]
