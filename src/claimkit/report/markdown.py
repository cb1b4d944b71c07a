"""report.md, and the short text forms of a verdict that the terminal and html reuse."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Mapping, Sequence

from claimkit.provenance import describe_device, short_hash
from claimkit.report import error_rates as rates
from claimkit.report.history import Change
from claimkit.report.json_report import RunDocument
from claimkit.report.plots import Plot, PlotProblem
from claimkit.report.revisions import SpecRevision
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


def preregistration_notes(verdict: Verdict) -> tuple[tuple[str, str], ...]:
    """(tag, line) pairs for what a reader must know before trusting the rule: a spec or input
    that is not the locked one, and a rule changed after an earlier result was recorded."""
    notes = []
    if verdict.preregistered is False:
        differs = "; ".join(verdict.preregistration.get("differs") or ()) or "not locked"
        notes.append(("[not pre-registered]", f"not pre-registered: {differs}"))
    changed = verdict.preregistration.get("changed_after_result")
    if changed:
        notes.append(("[changed after a result was seen]", f"changed after a result was seen: {changed_rule(verdict)}"))
    return tuple(notes)


def preregistration_text(verdict: Verdict) -> str | None:
    """"preregistered (lock L, locked at T)" or "not pre-registered: what differs (lock L)";
    None for a record that does not say."""
    record = verdict.preregistration
    if verdict.preregistered is None:
        return None
    if verdict.preregistered:
        return f"preregistered (lock {record.get('lock')}, locked at {record.get('locked_at')})"
    return f"not pre-registered: {'; '.join(record.get('differs') or ()) or 'not locked'} (lock {record.get('lock')})"


def changed_rule(verdict: Verdict) -> str:
    """What history says about a claim whose rule changed after a result: which run, which hashes
    (shortened; the record has them in full)."""
    seen = verdict.preregistration.get("changed_after_result") or {}
    return (f"run {seen.get('run_id')} recorded {seen.get('outcome')} under claim hash "
            f"{short_hash(seen.get('claim_hash'))}; this verdict was decided under {short_hash(verdict.claim_hash)}")


def commit_text(provenance: Mapping[str, Any]) -> str:
    """"<commit> (clean)", "<commit> (dirty, diff <hash>)" or "not a git checkout"."""
    if not provenance.get("commit"):
        return "not a git checkout"
    if provenance.get("dirty"):
        return f"{provenance['commit']} (dirty, diff {provenance.get('diff_hash')})"
    return f"{provenance['commit']} (clean)"


def versions_text(provenance: Mapping[str, Any]) -> str:
    versions = provenance.get("versions") or {}
    return ", ".join(f"{name} {version or '(not installed)'}" for name, version in versions.items()) or "-"


def provenance_facts(document: RunDocument) -> list[tuple[str, str]]:
    """The run's provenance for people: its own record, and what its verdicts add (claim code, devices)."""
    run = document.provenance
    records = [v.provenance for v in document.verdicts if v.provenance]
    if not run and not records:
        return []
    every = ([run] if run else []) + records
    facts = [("commit", "; ".join(sorted({commit_text(p) for p in every})))]
    sources = sorted({p["claimkit_source"] for p in every if p.get("claimkit_source")})
    if sources:
        facts.append(("claimkit source", ", ".join(sources)))
    code = sorted({f"{p.get('claim_dir')} {p['claim_code']}" for p in records if p.get("claim_code")})
    if code:
        facts.append(("claim code", "; ".join(code)))
    facts.append(("packages", versions_text(every[0])))
    devices = sorted({describe_device(p.get("device")) for p in records})
    if run.get("device"):
        writer = describe_device(run["device"])
        if devices and writer not in devices:  # under xdist the controller, which runs no model, writes the report
            writer += " (the process that wrote the report, not where any verdict ran)"
        facts.append(("device (report)", writer))
    if devices:
        facts.append(("device (verdicts)", "; ".join(devices)))
    locked = [v for v in document.verdicts if v.preregistered is not None]
    if locked:
        count = sum(bool(v.preregistered) for v in locked)
        facts.append(("pre-registration", f"{count} of {len(locked)} verdicts decided under the locked spec and inputs"))
    return facts


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _opt(value: Any) -> str:
    return "-" if value is None else _num(value)


# -- report.md ----------------------------------------------------------------


def check_lines(verdict: Verdict) -> list[str]:
    """The manipulation checks the claim required, passed or failed, with what each measured."""
    if not verdict.checks:
        return []
    out = ["Manipulation checks:", ""]
    for check_id, check in verdict.checks.items():
        state = "passed" if check.get("passed") else "FAILED"
        out.append(f"- {check_id} ({check.get('title', '')}): **{state}**: {check.get('reason', '')}")
    return out + [""]


def profile_lines(document: RunDocument) -> list[str]:
    """What each profile's model is and what it can test, from the profile files (none for older documents)."""
    if not document.profile_notes:
        return []
    out = ["## Profiles", ""]
    for name, note in sorted(document.profile_notes.items()):
        text = " ".join(t for t in (note.get("description", ""), note.get("about", "")) if t)
        out.append(f"- **{name}**: {text}")
    return out + [""]


def render_markdown(
    document: RunDocument,
    plots: Sequence[Plot] = (),
    problems: Sequence[PlotProblem] = (),
    changes: Sequence[Change] | None = None,
    previous_run: str | None = None,
    plots_dir: str = "plots",
    revisions: Sequence[SpecRevision] = (),
    error_rates: Sequence[rates.PaperRates] | None = None,
) -> str:
    """The run as Markdown; plot images are linked from `plots_dir` (relative to report.md).

    `error_rates` (claimkit.report.error_rates) adds the rules' simulated error rates; None leaves them out.
    """
    out = [f"# claimkit report: run {document.run_id}", ""]
    out += [
        f"- created: {document.created}",
        f"- command: `{document.command}`",
        f"- claimkit version: {document.claimkit_version}",
        f"- profiles: {', '.join(document.profiles) or '-'}",
        f"- verdicts: {len(document.verdicts)} ({outcome_counts(document.verdicts)})",
        "",
        *profile_lines(document),
        "## Summary",
        "",
        "| claim | profile | model | verdict | key numbers | paper |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for v in document.verdicts:
        outcome = " ".join([f"**{v.outcome.value}**", *(tag for tag, _ in preregistration_notes(v))])
        cells = [v.claim_id, v.profile, v.model, outcome, key_numbers(v), paper_numbers(v)]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    out.append("")
    out += _provenance_section(document)
    out += _error_rates_section(error_rates)
    out += _changes_section(changes, previous_run, revisions)
    out += ["## Verdicts", ""]
    for index, verdict in enumerate(document.verdicts):
        out += _verdict_section(
            verdict,
            [p for p in plots if p.verdict_index == index],
            [p for p in problems if p.verdict_index == index],
            plots_dir,
        )
    return "\n".join(out).rstrip() + "\n"


def _provenance_section(document: RunDocument) -> list[str]:
    facts = provenance_facts(document)
    if not facts:
        return []
    out = ["## Provenance", ""] + [f"- {name}: {value}" for name, value in facts] + [""]
    flagged = [(v, note) for v in document.verdicts for tag, note in preregistration_notes(v)]
    if flagged:
        out += ["Rules a reader should know about:", ""]
        out += [f"- {v.claim_id} [{v.profile}]: {note}" for v, note in flagged] + [""]
    return out


def _error_rates_section(entries: Sequence[rates.PaperRates] | None) -> list[str]:
    if entries is None:
        return []
    out = [f"## {rates.TITLE}", "", rates.INTRO, ""]
    for entry in entries:
        if not entry.rows:
            out += [f"- {entry.paper}: {entry.note}", ""]
            continue
        out += [f"{entry.paper}: `{entry.table}`, {rates.describe_reps(entry)}.", ""]
        headers, cells = rates.table(entry)
        out += ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
        out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in cells] + [""]
        if entry.note:
            out += [f"Note: {entry.note}.", ""]
    line = rates.expected_false_line(entries)
    return out + ([f"**Whole run:** {line}", ""] if line else [])


def _changes_section(changes: Sequence[Change] | None, previous_run: str | None,
                     revisions: Sequence[SpecRevision] = ()) -> list[str]:
    if previous_run is None or changes is None:
        return []
    out = [f"## Changes since run {previous_run}", ""]
    for revision in revisions:
        out += _revision_lines(revision)
    if not changes:
        return out + ["No verdict changed.", ""]
    return out + [f"- {c.kind}: {c.describe()}" for c in changes] + [""]


def _revision_lines(revision: SpecRevision) -> list[str]:
    """A spec revision, compactly: the hashes, one line per verdict it concerns, each changelog entry once."""
    out = [f"**{_cell(revision.headline())}**", ""]
    out += [f"- {problem}" for problem in revision.problems]
    out += [f"- {claim.describe()}" for claim in revision.claims]
    out += [f"- {change} *Why:* {why}" for change, why in revision.entry_lines()]
    return out + [""]


def _verdict_section(verdict: Verdict, plots: Sequence[Plot], problems: Sequence[PlotProblem], plots_dir: str) -> list[str]:
    ev = verdict.evidence
    out = [f"### {verdict.claim_id} · {verdict.profile} · {verdict.outcome.value.upper()}", ""]
    out += [f"> {verdict.scan_claim}", "", f"**Why:** {verdict.reason}", ""]
    if ev.extra.get("analog"):
        out += [f"**Measured as:** {ev.extra['analog']}", ""]
    facts = [
        ("paper", verdict.paper),
        ("parent claim", verdict.parent),
        ("model", verdict.model),
        ("seeds", ", ".join(str(s) for s in verdict.seeds) or None),
        ("n", verdict.n),
        ("n per group to decide", verdict.n_to_decide),
        ("spec hash", f"`{verdict.spec_hash}`"),
        ("claim hash", f"`{verdict.claim_hash}`" if verdict.claim_hash else None),
        ("pre-registration", preregistration_text(verdict)),
        ("decided by", verdict.decided_by or None),
        ("test", f"`{verdict.nodeid}`" if verdict.nodeid else None),
        ("decided", verdict.created),
        ("device", describe_device(verdict.provenance.get("device")) if verdict.provenance else None),
    ]
    out += [f"- {name}: {value}" for name, value in facts if value not in (None, "")] + [""]
    changed = verdict.preregistration.get("changed_after_result")
    if changed:
        out += [f"**Changed after a result was seen:** {changed_rule(verdict)}", ""]
    out += check_lines(verdict)
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
    if verdict.provenance:
        out += ["<details><summary>provenance</summary>", "", "```json", plain_json(dict(verdict.provenance)), "```", "",
                "</details>", ""]
    for plot in plots:
        out += [f"![{plot.title}]({plots_dir}/{plot.filename})", ""]
    for problem in problems:
        out += [f"*Plot '{problem.title}' not drawn: {problem.problem}*", ""]
    return out


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
