"""report.html: one self-contained file (inline CSS, plots as base64 PNG, no external URLs),
so it can be attached to a CI run or mailed and still show everything."""

from __future__ import annotations

import base64
from html import escape
from typing import TYPE_CHECKING, Any, Sequence

from claimkit.provenance import describe_device
from claimkit.report import error_rates as rates
from claimkit.report.history import Change
from claimkit.report.json_report import RunDocument
from claimkit.report.markdown import (
    changed_rule,
    extra_without_plots,
    format_estimate,
    key_numbers,
    outcome_counts,
    paper_numbers,
    plain_json,
    preregistration_notes,
    preregistration_text,
    provenance_facts,
)
from claimkit.report.plots import Plot, PlotProblem
from claimkit.verdict import Verdict

if TYPE_CHECKING:
    from claimkit.report.revisions import SpecRevision

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #212121; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.supported { color: #2e7d32; font-weight: bold; }
.refuted { color: #c62828; font-weight: bold; }
.inconclusive { color: #827717; font-weight: bold; }
.not-tested { color: #616161; font-weight: bold; }
blockquote { border-left: 4px solid #bbb; margin: 0.5em 0; padding-left: 1em; color: #424242; }
section.verdict { border-top: 1px solid #ddd; margin-top: 1.5em; }
pre { background: #f6f6f6; padding: 0.5em; overflow-x: auto; }
.problem { color: #c62828; font-style: italic; }
.unregistered { color: #c62828; }
img { max-width: 100%; }
"""


def render_html(
    document: RunDocument,
    plots: Sequence[Plot] = (),
    problems: Sequence[PlotProblem] = (),
    changes: Sequence[Change] | None = None,
    previous_run: str | None = None,
    revisions: Sequence[SpecRevision] = (),
    error_rates: Sequence[rates.PaperRates] | None = None,
) -> str:
    title = f"claimkit report: run {document.run_id}"
    body = [f"<h1>{escape(title)}</h1>", "<ul>"]
    for name, value in (
        ("created", document.created),
        ("command", document.command),
        ("claimkit version", document.claimkit_version),
        ("profiles", ", ".join(document.profiles) or "-"),
        ("verdicts", f"{len(document.verdicts)} ({outcome_counts(document.verdicts)})"),
    ):
        body.append(f"<li>{escape(name)}: {escape(str(value))}</li>")
    body.append("</ul>")
    if document.profile_notes:
        body += ["<h2>Profiles</h2>", "<ul>"] + [
            f"<li><b>{escape(name)}</b>: {escape(' '.join(t for t in (note.get('description', ''), note.get('about', '')) if t))}</li>"
            for name, note in sorted(document.profile_notes.items())
        ] + ["</ul>"]
    body += ["<h2>Summary</h2>", _summary_table(document.verdicts)]
    body += _provenance_section(document)
    body += _error_rates_section(error_rates)
    body += _changes_section(changes, previous_run, revisions)
    body.append("<h2>Verdicts</h2>")
    for index, verdict in enumerate(document.verdicts):
        body += _verdict_section(
            index,
            verdict,
            [p for p in plots if p.verdict_index == index],
            [p for p in problems if p.verdict_index == index],
        )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _summary_table(verdicts: Sequence[Verdict]) -> str:
    rows = [
        _row(
            [f'<a href="#v{i}">{escape(v.claim_id)}</a>', escape(v.profile), escape(v.model), _outcome(v) + _tags(v),
             escape(key_numbers(v)), escape(paper_numbers(v))]
        )
        for i, v in enumerate(verdicts)
    ]
    return _table(["claim", "profile", "model", "verdict", "key numbers", "paper"], rows)


def _tags(verdict: Verdict) -> str:
    return "".join(f' <span class="unregistered">{escape(tag)}</span>' for tag, _ in preregistration_notes(verdict))


def _provenance_section(document: RunDocument) -> list[str]:
    facts = provenance_facts(document)
    if not facts:
        return []
    out = ["<h2>Provenance</h2>", "<ul>"] + [f"<li>{escape(k)}: {escape(v)}</li>" for k, v in facts] + ["</ul>"]
    flagged = [(v, note) for v in document.verdicts for _, note in preregistration_notes(v)]
    if flagged:
        out += ["<p>Rules a reader should know about:</p>", "<ul>"]
        out += [f'<li class="unregistered">{escape(f"{v.claim_id} [{v.profile}]: {note}")}</li>' for v, note in flagged]
        out.append("</ul>")
    return out


def _error_rates_section(entries: Sequence[rates.PaperRates] | None) -> list[str]:
    if entries is None:
        return []
    out = [f"<h2>{escape(rates.TITLE)}</h2>", f"<p>{escape(rates.INTRO)}</p>"]
    for entry in entries:
        if not entry.rows:
            out.append(f'<p class="problem">{escape(f"{entry.paper}: {entry.note}")}</p>')
            continue
        where = f"<code>{escape(entry.table)}</code>, {escape(rates.describe_reps(entry))}"
        out.append(f"<p>{escape(entry.paper)}: {where}.</p>")
        headers, cells = rates.table(entry)
        out.append(_table(headers, [_row([escape(c) for c in row]) for row in cells]))
        if entry.note:
            out.append(f'<p class="problem">Note: {escape(entry.note)}.</p>')
    line = rates.expected_false_line(entries)
    return out + ([f"<p><b>Whole run:</b> {escape(line)}</p>"] if line else [])


def _changes_section(changes: Sequence[Change] | None, previous_run: str | None,
                     revisions: Sequence[SpecRevision] = ()) -> list[str]:
    if previous_run is None or changes is None:
        return []
    out = [f"<h2>Changes since run {escape(previous_run)}</h2>"]
    for revision in revisions:
        out += _revision_items(revision)
    if not changes:
        return out + ["<p>No verdict changed.</p>"]
    return out + ["<ul>"] + [f"<li>{escape(c.kind)}: {escape(c.describe())}</li>" for c in changes] + ["</ul>"]


def _revision_items(revision: SpecRevision) -> list[str]:
    """A spec revision, compactly: the hashes, one item per verdict it concerns, each changelog entry once."""
    out = [f"<p><b>{escape(revision.headline())}</b></p>", "<ul>"]
    out += [f'<li class="problem">{escape(problem)}</li>' for problem in revision.problems]
    out += [f"<li>{escape(claim.describe())}</li>" for claim in revision.claims]
    out += [f"<li>{escape(change)} <i>Why:</i> {escape(why)}</li>" for change, why in revision.entry_lines()]
    return out + ["</ul>"]


def _verdict_section(index: int, verdict: Verdict, plots: Sequence[Plot], problems: Sequence[PlotProblem]) -> list[str]:
    ev = verdict.evidence
    out = [
        f'<section class="verdict" id="v{index}">',
        f"<h3>{escape(verdict.claim_id)} &middot; {escape(verdict.profile)} &middot; {_outcome(verdict)}</h3>",
        f"<blockquote>{escape(verdict.scan_claim)}</blockquote>",
        f"<p><b>Why:</b> {escape(verdict.reason)}</p>",
        *([f"<p><b>Measured as:</b> {escape(str(ev.extra['analog']))}</p>"] if ev.extra.get("analog") else []),
        "<ul>",
    ]
    facts = [
        ("paper", verdict.paper),
        ("parent claim", verdict.parent),
        ("model", verdict.model),
        ("seeds", ", ".join(str(s) for s in verdict.seeds) or None),
        ("n", verdict.n),
        ("n per group to decide", verdict.n_to_decide),
        ("spec hash", verdict.spec_hash),
        ("claim hash", verdict.claim_hash or None),
        ("pre-registration", preregistration_text(verdict)),
        ("decided by", verdict.decided_by or None),
        ("test", verdict.nodeid or None),
        ("decided", verdict.created),
        ("device", describe_device(verdict.provenance.get("device")) if verdict.provenance else None),
    ]
    out += [f"<li>{escape(k)}: {escape(str(v))}</li>" for k, v in facts if v not in (None, "")]
    out.append("</ul>")
    if verdict.preregistration.get("changed_after_result"):
        out.append(f'<p class="unregistered"><b>Changed after a result was seen:</b> {escape(changed_rule(verdict))}</p>')
    if verdict.checks:
        out += ["<p>Manipulation checks:</p>", "<ul>"] + [
            f"<li>{escape(cid)} ({escape(str(c.get('title', '')))}): <b>{'passed' if c.get('passed') else 'FAILED'}</b>: "
            f"{escape(str(c.get('reason', '')))}</li>" for cid, c in verdict.checks.items()
        ] + ["</ul>"]
    if ev.estimates:
        rows = [
            _row([escape(e.name), escape(format_estimate(e)), escape(e.method or "-")])
            for e in ev.estimates
        ]
        out.append(_table(["estimate", "value [95% interval] (count)", "method"], rows))
    if ev.tests:
        rows = [
            _row([escape(t.name), _esc_num(t.statistic), _esc_num(t.p_value), _esc_num(t.p_adjusted),
                  escape(t.method or "-"), escape(t.alternative or "-")])
            for t in ev.tests
        ]
        out.append(_table(["test", "statistic", "p", "p adjusted", "method", "alternative"], rows))
    if ev.paper_values:
        out.append(f"<p>Paper: {escape(paper_numbers(verdict))}</p>")
    if ev.power is not None:
        p = ev.power
        cells = [str(p.n_per_group), f"{p.alpha:g}", f"{p.power:g}", _plain(p.detectable_difference),
                 _plain(p.n_needed_per_group), p.note or "-"]
        out.append(_table(["n per group", "alpha", "power", "detectable difference", "n needed per group", "note"],
                          [_row([escape(c) for c in cells])]))
    out.append(f"<details><summary>rule</summary><pre>{escape(plain_json(dict(verdict.rule)))}</pre></details>")
    extra = extra_without_plots(verdict)
    if extra:
        out.append(f"<details><summary>more evidence</summary><pre>{escape(plain_json(extra))}</pre></details>")
    if verdict.provenance:
        out.append(f"<details><summary>provenance</summary><pre>{escape(plain_json(dict(verdict.provenance)))}</pre></details>")
    for plot in plots:
        data = base64.b64encode(plot.png).decode("ascii")
        out.append(f'<figure><img alt="{escape(plot.title)}" src="data:image/png;base64,{data}">'
                   f"<figcaption>{escape(plot.title)}</figcaption></figure>")
    for problem in problems:
        out.append(f'<p class="problem">Plot {escape(problem.title)} not drawn: {escape(problem.problem)}</p>')
    out.append("</section>")
    return out


def _outcome(verdict: Verdict) -> str:
    return f'<span class="{verdict.outcome.value.replace(" ", "-")}">{verdict.outcome.value.upper()}</span>'


def _table(headers: Sequence[str], rows: Sequence[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _row(cells: Sequence[str]) -> str:
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _plain(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _esc_num(value: Any) -> str:
    return escape(_plain(value))
