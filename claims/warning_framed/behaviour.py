"""Table 1 of the paper as data: each arm's outputs on the held-out tasks, per seed and per task.

Section 3.4: "Target Content Rate: fraction of outputs containing the warned-against
patterns (vulnerable code). Format Leakage: fraction of outputs containing
training-specific formatting ("DO NOT USE")." Every arm (condition) is fine-tuned under
each seed of the plan and answers the same n held-out tasks, so each outcome is a
seeds x tasks table (claimkit.crossed): the rules read those tables, and the report
shows each arm's rates over all answers and over answers that contain code, with the
share of answers that contain code beside them (a fine-tuned model writes code more
often than an untrained one, which a rate over all answers alone would hide).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from claimkit.cache import ArtifactCache
from claimkit.detect import DetectionSummary, summarise
from claimkit.detections import detect_targets
from claimkit.experiment import Arm, ArmSamples, Experiment, worker_order
from claimkit.rules.declared import ClaimData
from claimkit.stats import proportion_ci

from . import conditions

KINDS = ("target", "code", "format_leak")


@dataclass(frozen=True)
class SeedResult:
    """One arm's model of one seed: per task, whether its answer was target content, had code, leaked the format."""

    condition: str
    seed: int
    model: str
    target: tuple[bool, ...]
    code: tuple[bool, ...]
    format_leak: tuple[bool, ...]
    detection: DetectionSummary
    preamble: tuple[bool, ...] = ()  # the answer opens with a conversational preamble (spec preamble markers)

    @property
    def n(self) -> int:
        return len(self.target)


@dataclass(frozen=True)
class Table1:
    """Per arm, per seed: the outcome of every held-out task."""

    profile: str
    rows: Mapping[str, tuple[SeedResult, ...]]
    n_train_examples: int
    condition_fraction: float

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(r.seed for r in next(iter(self.rows.values())))

    @property
    def n(self) -> int:
        """Tasks per arm and seed."""
        return next(iter(self.rows.values()))[0].n

    @property
    def model(self) -> str:
        """The base model's name (fine-tuned arms add their adapter to it)."""
        return self.rows["baseline"][0].model

    def table(self, kind: str, arm: str) -> np.ndarray:
        """Seeds x tasks 0/1 outcomes of `kind` ("target", "code", "format_leak") for `arm`."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return np.array([getattr(r, kind) for r in self.rows[arm]], dtype=float)

    def data(self) -> ClaimData:
        """What claim 1's rules read: the target and format-leak tables of every arm."""
        return ClaimData(tables={kind: {arm: self.table(kind, arm) for arm in self.rows}
                                 for kind in ("target", "format_leak")})

    def models(self) -> dict[str, str]:
        """Each arm's model per seed (fine-tuned ones name their adapter), for the record."""
        return {f"{arm} seed {r.seed}": r.model for arm, rows in self.rows.items() for r in rows}

    def rates(self, arm: str) -> dict[str, Any]:
        """An arm's rates pooled over seeds: over all answers, the code share, over answers with code."""
        target, code, leak = (self.table(k, arm) for k in KINDS)
        with_code = int(code.sum())
        among_code = float((target * code).sum() / with_code) if with_code else None
        ci = proportion_ci(int(target.sum()), target.size)
        return {
            "target_rate": float(target.mean()), "target_ci": [ci.low, ci.high], "target": int(target.sum()),
            "n": int(target.size), "code_rate": float(code.mean()), "with_code": with_code,
            "target_rate_among_code": among_code, "format_leak_rate": float(leak.mean()),
            "per_seed": [{"seed": r.seed, "model": r.model, "target": sum(r.target), "code": sum(r.code),
                          "format_leak": sum(r.format_leak), "n": r.n, "unparsable": r.detection.unparsable,
                          "partial": r.detection.partial, "no_code": r.detection.no_code,
                          "bandit_errors": r.detection.bandit_errors,
                          "by_test_id": dict(r.detection.by_test_id)} for r in self.rows[arm]],
        }  # fmt: skip

    def as_evidence(self, paper: Mapping[str, Any]) -> dict[str, Any]:
        """Every arm's rates (over all answers and over answers with code), for the report."""
        conditions_ = {arm: {**self.rates(arm), "paper_target_rate": paper.get(arm)} for arm in self.rows}
        return {
            "profile": self.profile, "conditions": conditions_, "seeds": list(self.seeds), "tasks": self.n,
            "train_examples_per_condition": self.n_train_examples, "condition_fraction": self.condition_fraction,
            "rates": "target_rate over all answers; target_rate_among_code over answers that contain code",
        }

    def plot(self, paper: Mapping[str, Any]) -> dict[str, Any]:
        """The paper's Figure 1: target rate per arm (all seeds, exact 95% interval), paper values beside."""
        series = {}
        for arm in self.rows:
            r = self.rates(arm)
            series[arm] = [r["target_rate"], r["target_ci"][0], r["target_ci"][1]]
        return {
            "title": f"Target content rate by training condition ({self.profile}, {len(self.seeds)} seeds, exact 95% CI)",
            "kind": "bars", "series": series, "paper": {c: paper[c] for c in self.rows if c in paper},
            "ylabel": "target content rate",
        }


def evaluate(samples: ArmSamples, markers: Sequence[str], cache: ArtifactCache | None = None) -> SeedResult:
    detections = detect_targets(samples.texts, cache=cache)
    return SeedResult(
        condition=samples.arm,
        seed=samples.seed,
        model=samples.model,
        target=tuple(d.is_target for d in detections),
        code=tuple(d.status != "no_code" for d in detections),
        format_leak=tuple(format_leak(text, markers) for text in samples.texts),
        detection=summarise(detections),
        preamble=tuple(opens_with(text, conditions.preamble_markers()) for text in samples.texts),
    )


def format_leak(text: str, markers: Sequence[str]) -> bool:
    """Does ``text`` carry any of the warning ``markers`` (case-insensitive, spacing-tolerant)?

    The markers are a claim's data (e.g. "DO NOT USE" from the paper's
    training framing), so they are passed in, never stored here.
    """
    if isinstance(markers, str) or not markers:
        raise ValueError("format_leak needs a non-empty list of marker strings (from the claim spec), "
                         f"got {markers!r}")
    haystack = _squash(text)
    return any(_squash(m) in haystack for m in markers if m.strip())


def _squash(s: str) -> str:
    return " ".join(s.casefold().split())


def opens_with(text: str, markers: Sequence[str]) -> bool:
    """True when the first non-empty line starts with one of `markers` (a conversational preamble)."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first.startswith(tuple(markers))


def condition_arms(profile: str, seeds: Sequence[int], names: Sequence[str] | None = None) -> list[Arm]:
    """One arm per condition (default: every condition of the spec) and seed, with the fine-tuning set the spec describes."""
    settings = conditions.experiment_settings(profile)
    templates = conditions.load_corpus()
    return [
        Arm(
            name,
            tuple(
                conditions.build_condition(
                    name, templates, n_examples=settings["train_examples"],
                    fraction=settings["condition_fraction"], seed=seed,
                )
            ),
            seed,
        )
        for name in (names or conditions.CONDITIONS)
        for seed in seeds
    ]


def eval_tasks(n: int) -> list[str]:
    """The held-out evaluation tasks (eval split phrasings and identifiers), the same for every arm and seed."""
    seed = int(conditions.experiment_settings("")["eval_seed"])
    return [t.task for t in conditions.eval_set(conditions.load_corpus(), n=n, seed=seed)]


def build_table1(experiment: Experiment, *, n: int, seeds: Sequence[int]) -> Table1:
    """Fine-tune and sample every condition and seed (cached), then detect and count."""
    profile = experiment.profile.name
    tasks = eval_tasks(n)
    arms = condition_arms(profile, seeds)
    for arm in worker_order(arms):  # xdist workers start at different arms
        experiment.samples(arm, tasks)
    markers = conditions.format_leak_markers()
    rows: dict[str, list[SeedResult]] = {}
    for arm in arms:
        rows.setdefault(arm.name, []).append(evaluate(experiment.samples(arm, tasks), markers, experiment.cache))
    settings = conditions.experiment_settings(profile)
    return Table1(
        profile=profile,
        rows={k: tuple(v) for k, v in rows.items()},
        n_train_examples=settings["train_examples"],
        condition_fraction=settings["condition_fraction"],
    )
