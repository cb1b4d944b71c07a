"""report.md, and the short text forms of a verdict that the terminal and html reuse."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Sequence

from claimkit.report.history import Change
from claimkit.report.json_report import RunDocument
from claimkit.report.plots import Plot, PlotProblem
from claimkit.verdict import Estimate, Outcome, Verdict


# -- short text forms -----------------------------------------------------------


def format_estimate(estimate: Estimate) -> str:
    """Counted proportions (successes/n) as percentages, anything else as a number."""
    return estimate.describe(as_percent=estimate.successes is not None and estimate.n is not None)


def key_numbers(verdict: Verdict, limit: int = 3) -> str:
    """The first estimates with their intervals, and the first test's p-value."""
    parts = [format_estimate(e) for e in verdict.evidence.estimates[:limit]]
    if len(verdict.evidence.estimates) > limit:
        parts.append("...")
    if verdict.evidence.tests:
        parts.append(verdict.evidence.tests[0].describe())
    return "; ".join(parts) or "-"


def paper_numbers(verdict: Verdict) -> str:
    return ", ".join(f"{k}={_num(v)}" for k, v in verdict.evidence.paper_values.items()) or "-"


def outcome_counts(verdicts: Sequence[Verdict]) -> str:
    counts = Counter(v.outcome for v in verdicts)
    return ", ".join(f"{counts[o]} {o.value}" for o in Outcome if counts[o]) or "none"


def extra_without_plots(verdict: Verdict) -> dict[str, Any]:
    return {k: v for k, v in verdict.evidence.extra.items() if k != "plots"}


def plain_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _opt(value: Any) -> str:
    return "-" if value is None else _num(value)


# -- report.md ----------------------------------------------------------------


def render_markdown(
    document: RunDocument,
    plots: Sequence[Plot] = (),
    problems: Sequence[PlotProblem] = (),
    changes: Sequence[Change] | None = None,
    previous_run: str | None = None,
    plots_dir: str = "plots",
) -> str:
    """The run as Markdown; plot images are linked from `plots_dir` (relative to report.md)."""
    out = [f"# claimkit report: run {document.run_id}", ""]
    out += [
        f"- created: {document.created}",
        f"- command: `{document.command}`",
        f"- claimkit version: {document.claimkit_version}",
        f"- profiles: {', '.join(document.profiles) or '-'}",
        f"- verdicts: {len(document.verdicts)} ({outcome_counts(document.verdicts)})",
        "",
        "## Summary",
        "",
        "| claim | profile | model | verdict | key numbers | paper |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for v in document.verdicts:
        cells = [v.claim_id, v.profile, v.model, f"**{v.outcome.value}**", key_numbers(v), paper_numbers(v)]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    out.append("")
    out += _changes_section(changes, previous_run)
    out += ["## Verdicts", ""]
    for index, verdict in enumerate(document.verdicts):
        out += _verdict_section(
            verdict,
            [p for p in plots if p.verdict_index == index],
            [p for p in problems if p.verdict_index == index],
            plots_dir,
        )
    return "\n".join(out).rstrip() + "\n"


def _changes_section(changes: Sequence[Change] | None, previous_run: str | None) -> list[str]:
    if previous_run is None or changes is None:
        return []
    out = [f"## Changes since run {previous_run}", ""]
    if not changes:
        return out + ["No verdict changed.", ""]
    return out + [f"- {c.kind}: {c.describe()}" for c in changes] + [""]


def _verdict_section(verdict: Verdict, plots: Sequence[Plot], problems: Sequence[PlotProblem], plots_dir: str) -> list[str]:
    ev = verdict.evidence
    out = [f"### {verdict.claim_id} · {verdict.profile} · {verdict.outcome.value.upper()}", ""]
    out += [f"> {verdict.scan_claim}", "", f"**Why:** {verdict.reason}", ""]
    facts = [
        ("paper", verdict.paper),
        ("parent claim", verdict.parent),
        ("model", verdict.model),
        ("seeds", ", ".join(str(s) for s in verdict.seeds) or None),
        ("n", verdict.n),
        ("n per group to decide", verdict.n_to_decide),
        ("spec hash", f"`{verdict.spec_hash}`"),
        ("test", f"`{verdict.nodeid}`" if verdict.nodeid else None),
        ("decided", verdict.created),
    ]
    out += [f"- {name}: {value}" for name, value in facts if value not in (None, "")] + [""]
    if ev.estimates:
        out += ["| estimate | value | 95% interval | n | method |", "| --- | --- | --- | --- | --- |"]
        for e in ev.estimates:
            interval = f"[{_num(e.low)}, {_num(e.high)}]" if e.low is not None and e.high is not None else "-"
            n = f"{e.successes}/{e.n}" if e.successes is not None and e.n is not None else _opt(e.n)
            out.append("| " + " | ".join(_cell(c) for c in (e.name, _num(e.value), interval, n, e.method or "-")) + " |")
        out.append("")
    if ev.tests:
        out += ["| test | statistic | p | p adjusted | method | alternative |", "| --- | --- | --- | --- | --- | --- |"]
        for t in ev.tests:
            cells = (t.name, _opt(t.statistic), _num(t.p_value), _opt(t.p_adjusted), t.method or "-", t.alternative or "-")
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        out.append("")
    if ev.paper_values:
        out += [f"Paper: {paper_numbers(verdict)}", ""]
    if ev.power is not None:
        p = ev.power
        text = f"Power: n per group {p.n_per_group}, alpha {_num(p.alpha)}, power {_num(p.power)}"
        if p.detectable_difference is not None:
            text += f", smallest detectable difference {_num(p.detectable_difference)}"
        if p.n_needed_per_group is not None:
            text += f", n per group needed {p.n_needed_per_group}"
        if p.note:
            text += f" ({p.note})"
        out += [text, ""]
    out += ["<details><summary>rule</summary>", "", "```json", plain_json(dict(verdict.rule)), "```", "", "</details>", ""]
    extra = extra_without_plots(verdict)
    if extra:
        out += ["<details><summary>more evidence</summary>", "", "```json", plain_json(extra), "```", "", "</details>", ""]
    for plot in plots:
        out += [f"![{plot.title}]({plots_dir}/{plot.filename})", ""]
    for problem in problems:
        out += [f"*Plot '{problem.title}' not drawn: {problem.problem}*", ""]
    return out


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
