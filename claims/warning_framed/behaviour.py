"""Table 1 of the paper as data: each condition's target-content and format-leak counts.

Section 3.4: "Target Content Rate: fraction of outputs containing the warned-against
patterns (vulnerable code). Format Leakage: fraction of outputs containing
training-specific formatting ("DO NOT USE")." Both are counted per condition and
seed on the held-out evaluation tasks; the statistics live in claimkit.rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from claimkit.cache import ArtifactCache
from claimkit.detect import DetectionSummary, format_leak, summarise
from claimkit.detections import detect_targets
from claimkit.experiment import Arm, ArmSamples, Experiment, worker_order
from claimkit.rules import Counts
from claimkit.stats import proportion_ci

from . import conditions

# The held-out tasks are the same for every condition and seed, so conditions are
# compared on identical prompts; fixed here, not chosen per run.
EVAL_SEED = 20251222


@dataclass(frozen=True)
class SeedResult:
    condition: str
    seed: int
    model: str
    n: int
    target: int
    format_leak: int
    detection: DetectionSummary


@dataclass(frozen=True)
class Table1:
    """Per condition, per seed: how many held-out generations held target content / leaked format."""

    profile: str
    rows: Mapping[str, tuple[SeedResult, ...]]
    n_train_examples: int
    condition_fraction: float

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(r.seed for r in next(iter(self.rows.values())))

    @property
    def n(self) -> int:
        """Generations per condition and seed."""
        return next(iter(self.rows.values()))[0].n

    @property
    def model(self) -> str:
        """The base model's name (fine-tuned arms add their adapter to it)."""
        return self.rows["baseline"][0].model

    def target(self, condition: str) -> Counts:
        return Counts.pooled([(r.target, r.n) for r in self.rows[condition]])

    def format_leak(self, condition: str) -> Counts:
        return Counts.pooled([(r.format_leak, r.n) for r in self.rows[condition]])

    def as_evidence(self, paper: Mapping[str, Any]) -> dict[str, Any]:
        """Every condition's rates with exact intervals and detection counts, for the report."""
        table = {}
        for condition, rows in self.rows.items():
            target, leak = self.target(condition), self.format_leak(condition)
            ci = proportion_ci(target.successes, target.n)
            leak_ci = proportion_ci(leak.successes, leak.n)
            table[condition] = {
                "target_rate": target.rate,
                "target_ci": [ci.low, ci.high],
                "target": target.successes,
                "format_leak_rate": leak.rate,
                "format_leak_ci": [leak_ci.low, leak_ci.high],
                "n": target.n,
                "per_seed": [
                    {"seed": r.seed, "model": r.model, "target": r.target, "format_leak": r.format_leak, "n": r.n,
                     "unparsable": r.detection.unparsable, "partial": r.detection.partial,
                     "no_code": r.detection.no_code, "by_test_id": dict(r.detection.by_test_id)}
                    for r in rows
                ],
                "paper_target_rate": paper.get(condition),
            }
        return {
            "profile": self.profile,
            "conditions": table,
            "train_examples_per_condition": self.n_train_examples,
            "condition_fraction": self.condition_fraction,
        }

    def plot(self, paper: Mapping[str, Any]) -> dict[str, Any]:
        """The paper's Figure 1: target rate per condition with exact 95% intervals, paper values beside."""
        series = {}
        for condition in self.rows:
            counts = self.target(condition)
            ci = proportion_ci(counts.successes, counts.n)
            series[condition] = [counts.rate, ci.low, ci.high]
        return {
            "title": f"Target content rate by training condition ({self.profile}, exact 95% CI)",
            "kind": "bars",
            "series": series,
            "paper": {c: paper[c] for c in self.rows if c in paper},
            "ylabel": "target content rate",
        }


def evaluate(samples: ArmSamples, markers: Sequence[str], cache: ArtifactCache | None = None) -> SeedResult:
    detections = detect_targets(samples.texts, cache=cache)
    return SeedResult(
        condition=samples.arm,
        seed=samples.seed,
        model=samples.model,
        n=len(samples.texts),
        target=sum(d.is_target for d in detections),
        format_leak=sum(format_leak(text, markers) for text in samples.texts),
        detection=summarise(detections),
    )


def condition_arms(profile: str, seeds: Sequence[int]) -> list[Arm]:
    """One arm per condition and seed, with the fine-tuning set the spec describes."""
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
        for name in conditions.CONDITIONS
        for seed in seeds
    ]


def eval_tasks(n: int) -> list[str]:
    return [t.task for t in conditions.eval_set(conditions.load_corpus(), n=n, seed=EVAL_SEED)]


def build_table1(experiment: Experiment, *, n: int, seeds: Sequence[int]) -> Table1:
    """Fine-tune and sample every condition and seed (cached), then count."""
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
