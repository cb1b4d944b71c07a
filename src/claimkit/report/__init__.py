"""Verdict reports: write a run (verdicts.json, report.md, report.html, plots), keep history.

`write_run` is what the pytest plugin calls at the end of a session; `render_run`
re-draws a run's human-readable reports from its verdicts.json (`claimkit report`).
A run's verdicts are checked against history as they are written: a claim decided
under a rule that changed after an earlier result was recorded is flagged; where the
previous run decided a paper under another spec, the changes say so, with the newer
spec's changelog (`claimkit.report.revisions`).
Importing this package is light: matplotlib is imported only when plots are drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from claimkit.report.history import (
    HISTORY_FILE,
    LATEST_JSON,
    Change,
    Drift,
    append_history,
    compare,
    drifts,
    flag_changed_rules,
    new_run_id,
    previous_run_id,
    read_history,
    resolve_run_dir,
    resolve_verdicts_file,
    update_latest,
)
from claimkit.report.json_report import (
    SCHEMA,
    VERDICTS_FILE,
    ReportError,
    RunDocument,
    load_document,
    write_document,
    write_text_atomic,
    write_bytes_atomic,
)
from claimkit.report.revisions import SpecRevision, spec_revisions
from claimkit.verdict import Verdict

__all__ = [
    "SCHEMA", "VERDICTS_FILE", "HISTORY_FILE", "LATEST_JSON", "Change", "Drift", "ReportError", "RunDocument",
    "SpecRevision", "WrittenRun", "compare", "drifts", "load_document", "new_run_id", "read_history", "render_run",
    "resolve_run_dir", "resolve_verdicts_file", "spec_revisions", "write_run",
]

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"
_LOCK_FILE = ".claimkit-report.lock"


@dataclass(frozen=True)
class WrittenRun:
    run_dir: Path
    document: RunDocument
    previous_run: str | None  # the run it was compared with, if any
    changes: tuple[Change, ...]
    revisions: tuple[SpecRevision, ...] = ()  # papers the previous run decided under another spec


def write_run(
    report_dir: str | Path,
    verdicts: Sequence[Verdict],
    *,
    command: str,
    claimkit_version: str,
    run_id: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    specs_dir: str | Path | None = None,
    profile_notes: Mapping[str, Mapping[str, str]] | None = None,
) -> WrittenRun:
    """Write `<report_dir>/<run-id>/`, append history, move `latest` to it.

    Verdicts are sorted by (claim, profile, model) so a run's report does not depend
    on which xdist worker finished first. `provenance` is the run's own
    (`claimkit.provenance.run_provenance`); each verdict carries its decider's.
    `specs_dir` (with replaced specs in its archive/) is where the changelog is read
    from when the previous run decided a paper under another spec, and where the specs
    the verdicts were decided by give their rules' simulated error rates (`render_run`).
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    run_id = run_id or new_run_id()
    run_dir = report_dir / run_id
    run_dir.mkdir()
    ordered = tuple(sorted(verdicts, key=lambda v: (v.claim_id, v.profile, v.model)))
    document = RunDocument(
        run_id=run_id,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        claimkit_version=claimkit_version,
        command=command,
        profiles=tuple(sorted({v.profile for v in ordered})),
        verdicts=ordered,
        provenance=dict(provenance or {}),
        profile_notes={k: dict(v) for k, v in (profile_notes or {}).items() if any(x.profile == k for x in ordered)},
        artifacts={
            "run_dir": run_id,
            "verdicts_json": f"{run_id}/{VERDICTS_FILE}",
            "report_md": f"{run_id}/{REPORT_MD}",
            "report_html": f"{run_id}/{REPORT_HTML}",
            "plots": f"{run_id}/{PLOTS_DIR}/",
            "history": HISTORY_FILE,
        },
    )
    from filelock import FileLock

    # Two runs finishing together must not interleave history lines or race on `latest`.
    with FileLock(str(report_dir / _LOCK_FILE)):
        document = replace(document, verdicts=flag_changed_rules(ordered, read_history(report_dir)))
        previous, changes, revisions = _changes_since_previous(report_dir, document, specs_dir)
        render_run(run_dir, document, changes=changes, previous_run=previous, revisions=revisions,
                   specs_dir=specs_dir)
        write_document(document, run_dir / VERDICTS_FILE)
        append_history(report_dir, document)
        update_latest(report_dir, document)
    return WrittenRun(run_dir, document, previous, changes, revisions)


def _changes_since_previous(
    report_dir: Path, document: RunDocument, specs_dir: str | Path | None
) -> tuple[str | None, tuple[Change, ...], tuple[SpecRevision, ...]]:
    previous = previous_run_id(report_dir, document.run_id)
    if previous is None:
        return None, (), ()
    try:
        earlier = load_document(report_dir / previous / VERDICTS_FILE)
    except ReportError:  # an unreadable old run must not cost tonight's report
        return None, (), ()
    revisions = tuple(spec_revisions(earlier, document, specs_dir)) if specs_dir is not None else ()
    return previous, tuple(compare(earlier.verdicts, document.verdicts)), revisions


def render_run(
    run_dir: str | Path,
    document: RunDocument | None = None,
    *,
    changes: Sequence[Change] | None = None,
    previous_run: str | None = None,
    revisions: Sequence[SpecRevision] = (),
    specs_dir: str | Path | None = None,
) -> list[Path]:
    """(Re)write report.md, report.html and plots/ of a run; returns the paths written.

    `revisions` (papers `previous_run` decided under another spec) go with the changes.
    With `specs_dir`, the reports show the calibration table beside each spec the
    verdicts were decided by (claimkit.report.error_rates); a missing or malformed
    table is a line in the report, never an error.
    """
    from claimkit.report.error_rates import error_rates
    from claimkit.report.html import render_html
    from claimkit.report.markdown import render_markdown
    from claimkit.report.plots import verdict_plots

    run_dir = Path(run_dir)
    document = document or load_document(run_dir / VERDICTS_FILE)
    plots, problems = verdict_plots(document.verdicts)
    written = []
    stale = set((run_dir / PLOTS_DIR).glob("*.png")) - {run_dir / PLOTS_DIR / p.filename for p in plots}
    for path in stale:  # left by an earlier rendering of this run
        path.unlink()
    for plot in plots:
        path = run_dir / PLOTS_DIR / plot.filename
        write_bytes_atomic(path, plot.png)
        written.append(path)
    rates = error_rates(document.verdicts, specs_dir) if specs_dir is not None else None
    markdown = render_markdown(document, plots, problems, changes, previous_run, plots_dir=PLOTS_DIR,
                               revisions=revisions, error_rates=rates)
    write_text_atomic(run_dir / REPORT_MD, markdown)
    write_text_atomic(run_dir / REPORT_HTML, render_html(document, plots, problems, changes, previous_run, revisions,
                                                         error_rates=rates))
    return [run_dir / REPORT_MD, run_dir / REPORT_HTML, *written]
