"""The `claimkit` console script.

    claimkit report [RUN|latest] [--against OTHER] [--fail-on-change] [--notes NOTES.toml] [--specs DIR]
    claimkit mark SCAN --report REPORT [--specs DIR] [--update-supported]
    claimkit list SCAN [--report REPORT] [--specs DIR]
    claimkit preregister SPEC.toml
    claimkit calibrate SPEC.toml [--reps N] [--profile P ...] [--workers K]
    claimkit init SCAN --paper NAME [--prefix ID] [--root DIR]
    claimkit rehearse paper --out DIR [--tiny] [--seed N]

`report` says which papers' specs differ between the two runs (with what the newer
spec's changelog says about each claim whose rule or verdict differs), re-renders a
run's report.md and report.html (with the simulated error rates of the rules, from the
calibration tables beside the specs in --specs), then lists the verdicts that changed,
what the two runs' conditions differ in (devices, package versions, commits, code), the
verdicts whose numbers moved, and the verdicts that were not pre-registered or whose
rule changed after a result was seen. `preregister` locks a claim spec before its results are seen: it writes
`<spec>.lock.json` beside it (the spec's and each claim's hash, the hashes of the
inputs its `[preregistration]` table declares, the commit, the UTC time); runs mark
every verdict whose spec or inputs differ from the lock "not pre-registered".
`init` starts a new paper from its scan: `claims/<name>/` (a conftest and one test
module per scan claim, each skipped as "not operationalised yet") and
`fixtures/claims/<name>.toml` (one draft claim per scan claim, quoting its text, with an
empty rule); it writes only new files. `calibrate` simulates every declared rule of a spec at its profiles' n and seeds
(claimkit.calibration; minutes: a line per claim and profile on stderr as each is
done), writes `<spec>.calibration.json` beside it and prints the table; the reports
show the table beside the verdicts it applies to.

Exit codes: 0 ok, 1 failure (bad input, verdicts that changed with neither a changed
rule of their claim nor a note with --fail-on-change, a rule whose simulated error
rates break the spec's bounds), 2 usage (bad arguments). Errors are one sentence for a
person, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from claimkit.report import (
    VERDICTS_FILE,
    ReportError,
    compare,
    drifts,
    load_document,
    render_run,
    resolve_run_dir,
    resolve_verdicts_file,
)
from claimkit.calibration_table import CalibrationError
from claimkit.preregistration import PreregistrationError, check_spec, lock_path, write_lock
from claimkit.report.environment import differences, environment
from claimkit.report.history import previous_run_id
from claimkit.report.markdown import changed_rule
from claimkit.report.notes import NOTES_FILE, ChangeNote, apply_notes, load_notes, unused_notes
from claimkit.report.revisions import SpecRevision, spec_revisions
from claimkit.spec import SpecError, load_spec, load_specs
from claimkit.verdict import Verdict

DEFAULT_REPORT_DIR = "reports"
DEFAULT_SPECS_DIR = "fixtures/claims"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        return args.handler(args)
    except _input_errors() as exc:
        print(f"claimkit {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claimkit", description="Verdict reports and scan files of claimkit runs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    report = commands.add_parser(
        "report", help="re-render a run's report.md/report.html and show verdicts that changed",
        description="Re-render a run's report.md and report.html from its verdicts.json and show which "
        "verdicts changed against another run (default: the previous run in history.jsonl).",
    )
    report.add_argument("run", nargs="?", default="latest",
                        help="run directory, run id, verdicts.json/latest.json, or 'latest' (default)")
    report.add_argument("--report-dir", default=DEFAULT_REPORT_DIR,
                        help=f"report directory holding run ids and 'latest' (default: {DEFAULT_REPORT_DIR})")
    report.add_argument("--against", metavar="OTHER_RUN", help="run to compare with (default: the previous run)")
    report.add_argument("--fail-on-change", action="store_true",
                        help="exit 1 if a verdict's outcome changed under an unchanged rule of its claim (claim "
                        "hash; spec hash for records without one) and no note explains it (nightly CI)")
    report.add_argument("--notes", type=Path, metavar="NOTES.toml",
                        help=f"verdict changes a person expects, and why (default: {NOTES_FILE} if it exists)")
    report.add_argument("--specs", type=Path, default=Path(DEFAULT_SPECS_DIR),
                        help=f"claim spec directory, with replaced specs in its archive/ (default: {DEFAULT_SPECS_DIR}): "
                        "its changelogs explain spec revisions between runs, its calibration tables "
                        "(<spec>.calibration.json) give the rules' simulated error rates in the report")
    report.set_defaults(handler=_report)

    mark = commands.add_parser(
        "mark", help="write the verdicts of a report into a scan file",
        description="Write each matched claim's verification into the scan file, atomically; "
        "a second run with the same report changes nothing.",
    )
    mark.add_argument("scan", type=Path, help="scan JSON file to mark")
    mark.add_argument("--report", required=True,
                      help="verdicts file (reports/latest.json, a run's verdicts.json), a run directory, or 'latest'")
    mark.add_argument("--specs", type=Path, default=Path(DEFAULT_SPECS_DIR),
                      help=f"claim spec directory (default: {DEFAULT_SPECS_DIR})")
    mark.add_argument("--update-supported", action="store_true",
                      help="also update the scan's own 'supported' strength from the verdicts")
    mark.set_defaults(handler=_mark)

    listing = commands.add_parser("list", help="list a scan's claims with their specs and verdicts")
    listing.add_argument("scan", type=Path, help="scan JSON file")
    listing.add_argument("--report", help="verdicts file, run directory or 'latest' to show verdicts from")
    listing.add_argument("--specs", type=Path, default=Path(DEFAULT_SPECS_DIR),
                         help=f"claim spec directory (default: {DEFAULT_SPECS_DIR})")
    listing.set_defaults(handler=_list)

    prereg = commands.add_parser(
        "preregister", help="lock a claim spec and its declared inputs before their results are seen",
        description="Write <spec>.lock.json beside the spec: its hash, each claim's hash, the hashes of the "
        "inputs its [preregistration] table declares, the commit and the UTC time. Runs mark every verdict "
        "whose spec or inputs differ from the lock as not pre-registered. An up-to-date lock is left as it is.",
    )
    prereg.add_argument("spec", type=Path, help="claim spec TOML file (e.g. fixtures/claims/<paper>.toml)")
    prereg.set_defaults(handler=_preregister)

    calibrate = commands.add_parser(
        "calibrate", help="simulate every rule's error rates at its profiles' n and seeds",
        description="Simulate every declared rule of a spec (schema 2, with a [calibration] table) at each "
        "profile's n and seeds: false support, false refutation and power. Writes <spec>.calibration.json "
        "beside the spec and prints the table; exit 1 when a rule breaks the spec's bounds. Takes minutes: "
        "a line per claim and profile goes to stderr as each is done.",
    )
    calibrate.add_argument("spec", type=Path, help="claim spec TOML file (e.g. fixtures/claims/<paper>.toml)")
    calibrate.add_argument("--reps", type=_positive, metavar="N",
                           help="simulated draws per point (default: the spec's [calibration] reps, else 1000)")
    calibrate.add_argument("--profile", action="append", dest="profiles", metavar="P",
                           help="simulate only this profile (repeat for several; default: every profile with levels)")
    calibrate.add_argument("--workers", type=_positive, default=1, metavar="K",
                           help="simulate rows in K processes (same results as one; default: 1)")
    calibrate.set_defaults(handler=_calibrate)

    init = commands.add_parser(
        "init", help="start a new paper: draft claim specs and skipped tests, one per scan claim",
        description="Write claims/<name>/ (conftest.py and one test module per scan claim, each skipped as "
        "'not operationalised yet') and fixtures/claims/<name>.toml (one draft claim per scan claim, quoting "
        "its text exactly, with an empty rule). Writes only new files: an existing one stops it first.",
    )
    init.add_argument("scan", type=Path, help="the paper's scan JSON file")
    init.add_argument("--paper", required=True, metavar="NAME",
                      help="the paper's short name, lower-case words joined by '-' (e.g. emergent-misalignment)")
    init.add_argument("--prefix", metavar="ID", help="claim id prefix (default: the initials of NAME, e.g. 'em')")
    init.add_argument("--root", type=Path, default=Path("."), metavar="DIR",
                      help="the repository to write into (default: the current directory)")
    init.set_defaults(handler=_init)

    rehearse = commands.add_parser(
        "rehearse", help="write random stand-ins for a profile's models and SAE, to rehearse its pipeline",
        description="Write randomly initialised checkpoints with the exact architectures of the paper profile's "
        "models (Llama-3.2-3B, Gemma-2-2B) and a random SAE in Gemma Scope's format (layer 20, width 16k), "
        "each with a README.txt saying its weights are random: any verdict from them is meaningless.",
    )
    rehearse.add_argument("profile", choices=["paper"], help="the profile to rehearse")
    rehearse.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write into")
    rehearse.add_argument("--tiny", action="store_true", help="the same architectures scaled down (for tests)")
    rehearse.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    rehearse.set_defaults(handler=_rehearse)
    return parser


def _rehearse(args: argparse.Namespace) -> int:
    from claimkit.rehearsal import rehearse_paper

    print(rehearse_paper(args.out, tiny=args.tiny, seed=args.seed).describe())
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


# -- commands -----------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    run_dir = resolve_run_dir(args.run, args.report_dir)
    document = load_document(run_dir / VERDICTS_FILE)
    report_dir = run_dir.parent
    if args.against:
        other_dir = resolve_run_dir(args.against, report_dir)
    else:
        previous = previous_run_id(report_dir, document.run_id)
        other_dir = report_dir / previous if previous else None
    other = load_document(other_dir / VERDICTS_FILE) if other_dir else None
    notes_path, notes = _notes(args.notes)
    changes = apply_notes(compare(other.verdicts, document.verdicts), notes) if other else None
    revisions = spec_revisions(other, document, args.specs) if other else []
    written = render_run(run_dir, document, changes=changes, previous_run=other.run_id if other else None,
                         revisions=revisions, specs_dir=args.specs)
    print(f"run {document.run_id}: {len(document.verdicts)} verdicts; rendered {written[0]} and {written[1]}")
    _print_registration(document.verdicts)
    if other is None:
        print("no earlier run to compare with (history.jsonl has none)")
        return 0
    for revision in revisions:
        _print_revision(revision)
    print(f"{len(changes) or 'no'} verdict change(s) from run {other.run_id} to run {document.run_id}")
    for change in changes:
        print(f"  {change.kind}: {change.describe()}")
    differing = differences(environment(other), environment(document))
    if differing:
        print("the runs were not made under the same conditions, so their numbers need not agree:")
    for line in differing:
        print(f"  {line}")
    drifted, identical = drifts(other.verdicts, document.verdicts)
    if drifted:
        print(f"{len(drifted)} verdict(s) kept their outcome with other numbers ({identical} identical in every "
              f"estimate, test and reason): the runs did not reproduce exactly")
        for drift in drifted:
            print(f"  {drift.describe()}")
    elif identical:
        print(f"all {identical} verdict(s) that kept their outcome have identical estimates, tests and reasons")
    for note in unused_notes(changes, [n for n in notes if n.profile in document.profiles]):
        print(f"  note {note.where} ({note.claim_id} [{note.profile}] -> {note.after.value}) explains no change "
              f"of this run; remove it once its change has landed")
    unexplained = [c for c in changes if c.unexplained]
    if args.fail_on_change and unexplained:
        print(f"{len(unexplained)} verdict(s) changed under unchanged claim specs and with no note in "
              f"{notes_path}: failing (--fail-on-change). If a change is expected, add a [[change]] "
              f"table with claim, profile, to and why there.", file=sys.stderr)
        return 1
    return 0


def _print_revision(revision: SpecRevision) -> None:
    """A paper decided under another spec: the hashes, each verdict whose rule or verdict differs,
    and the newer spec's changelog entries that name them, so a reader sees why they differ."""
    print(revision.headline())
    for problem in revision.problems:
        print(f"  {problem}")
    for claim in revision.claims:
        print(f"  {claim.describe()}")
    if revision.changelog:
        print(f"  the changelog of {revision.newer}, for these claims:")
    for change, why in revision.entry_lines():
        print(f"    {change}")
        print(f"      why: {why}")


def _print_registration(verdicts: Sequence[Verdict]) -> None:
    """Verdicts not decided under their locked spec and inputs, and rules changed after a result was seen."""
    unlocked: dict[str, list[str]] = defaultdict(list)
    for verdict in verdicts:
        if verdict.preregistered is False:
            differs = "; ".join(verdict.preregistration.get("differs") or ()) or "not locked"
            unlocked[differs].append(f"{verdict.claim_id} [{verdict.profile}]")
    for differs, names in unlocked.items():
        print(f"{len(names)} verdict(s) not pre-registered ({differs}): {', '.join(names)}")
    changed = [v for v in verdicts if v.preregistration.get("changed_after_result")]
    if changed:
        print(f"{len(changed)} verdict(s) decided under a rule changed after a result was seen:")
    for verdict in changed:
        print(f"  {verdict.claim_id} [{verdict.profile}]: {changed_rule(verdict)}")


def _notes(path: Path | None) -> tuple[Path, tuple[ChangeNote, ...]]:
    """The notes file asked for (it must exist), else the default one if there is one."""
    if path is not None:
        return path, load_notes(path)
    default = Path(NOTES_FILE)
    return default, load_notes(default) if default.is_file() else ()


def _mark(args: argparse.Namespace) -> int:
    report = resolve_verdicts_file(args.report, DEFAULT_REPORT_DIR)
    mark_scan = _command_part("claimkit.mark", "mark_scan")
    result = mark_scan(args.scan, report, specs_dir=args.specs, update_supported=args.update_supported)
    if result.changed:
        print(f"marked {len(result.marked)} claim(s) in {args.scan}: {', '.join(result.marked)}")
    elif result.marked:
        print(f"{args.scan} unchanged: it already records these verdicts ({', '.join(result.marked)})")
    else:
        print(f"{args.scan} unchanged: no verdict of the report matched a claim of the scan")
    for claim, reason in result.skipped:
        print(f"  skipped {claim}: {reason}")
    return 0


def _list(args: argparse.Namespace) -> int:
    load_scan, list_claims, format_claim_list = (
        _command_part("claimkit.scan", name) for name in ("load_scan", "list_claims", "format_claim_list")
    )
    scan = load_scan(args.scan)
    by_text: dict[str, list[Verdict]] | None = None  # None: show the verdicts the scan itself records
    if args.report:
        by_text = defaultdict(list)
        for verdict in load_document(resolve_verdicts_file(args.report, DEFAULT_REPORT_DIR)).verdicts:
            by_text[verdict.scan_claim].append(verdict)
        by_text = dict(by_text)
    specs = load_specs(args.specs) if args.specs.is_dir() else {}
    print(format_claim_list(list_claims(scan, by_text, specs)))
    return 0


def _preregister(args: argparse.Namespace) -> int:
    if args.spec.is_dir():
        raise SpecError(f"{args.spec}: is a directory; give one claim spec file (e.g. fixtures/claims/<paper>.toml)")
    spec = load_spec(args.spec)
    path = lock_path(spec.path)
    if path.is_file():
        check = check_spec(spec)
        if check.preregistered:
            print(f"{path} already locks {spec.path} as it is (locked at {check.locked_at}); left unchanged")
            return 0
        print(f"{path}: replacing the lock of {check.locked_at or 'unknown time'}: {'; '.join(check.differs)}")
    path, lock = write_lock(spec)
    commit = lock.commit or "none (not a git checkout)"
    print(f"locked {spec.path} in {path}: spec {lock.spec_hash}, {len(lock.claims)} claim(s), "
          f"{len(lock.inputs)} input(s), commit {commit}{' with uncommitted changes' if lock.dirty else ''}, "
          f"at {lock.locked_at}")
    for claim_id, digest in lock.claims.items():
        print(f"  claim {claim_id}: {digest}")
    for declared, digest in lock.inputs.items():
        print(f"  input {declared}: {digest}")
    if not lock.inputs:
        print(f"  no inputs: {spec.path} declares none in [preregistration] inputs")
    print("commit the lock before running the claims: a run compares the spec and inputs with it")
    return 0


def _init(args: argparse.Namespace) -> int:
    from claimkit import scaffold
    from claimkit.scan import load_scan

    scan = load_scan(args.scan)
    specs_dir = args.root / DEFAULT_SPECS_DIR
    specs = load_specs(specs_dir) if specs_dir.is_dir() else {}
    planned = scaffold.plan(scan, args.paper, root=args.root, specs=specs, prefix=args.prefix)
    scaffold.write(planned)
    print(f"started {scan.paper.title!r}: {len(planned.claim_ids)} draft claim(s) "
          f"({', '.join(planned.claim_ids)})")
    for path in planned.files:
        print(f"  wrote {path}")
    print(f"next: for each claim, write its rule and sample plans in {planned.spec_path} and its measurement in "
          f"{planned.package}/, lock the spec with `claimkit preregister {planned.spec_path}`, then run "
          f"`pytest {planned.package}`")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from claimkit import calibration  # numpy and scipy: only for this command

    if args.spec.is_dir():
        raise SpecError(f"{args.spec}: is a directory; give one claim spec file (e.g. fixtures/claims/<paper>.toml)")
    spec = load_spec(args.spec)
    reps = calibration.settings_reps(spec, args.reps)
    rows = calibration.plan_rows(spec, profiles=args.profiles)
    if not rows:
        raise CalibrationError(f"{spec.path}: no claim declares rule parts for a profile with calibration levels: "
                               "nothing to simulate")
    workers = min(args.workers, len(rows))
    print(f"calibrating {spec.path}: {len(rows)} row(s) (claim x profile), {reps} draws per point, "
          f"{workers} worker(s)", file=sys.stderr)
    started = time.perf_counter()

    def progress(done: calibration.RowDone) -> None:
        row, width = done.row, len(str(done.total))
        state = "within bounds" if row.within_bounds else "BROKEN: " + "; ".join(row.problems)
        print(f"[{done.done:>{width}}/{done.total}] {row.claim} {row.profile}: {done.seconds:.1f} s "
              f"(elapsed {_clock(time.perf_counter() - started)}); {state}", file=sys.stderr, flush=True)

    path, result = calibration.run(spec.path, reps=reps, profiles=args.profiles, progress=progress, workers=workers)
    print(calibration.markdown_table([calibration.row_record(r) for r in result]))
    print(f"wrote {path} ({len(result)} rows, {reps} draws per point, {_clock(time.perf_counter() - started)})")
    if args.profiles:
        print(f"  it holds only profile(s) {', '.join(dict.fromkeys(args.profiles))} (--profile); run without "
              f"--profile for the whole table")
    broken = [r for r in result if not r.within_bounds]
    if broken:
        print(f"{len(broken)} row(s) break the spec's bounds; their rules need another design, more samples or "
              f"other bounds (changed in the spec before results are seen):", file=sys.stderr)
        for row in broken:
            print(f"  {row.claim} [{row.profile}]: {'; '.join(row.problems)}", file=sys.stderr)
        return 1
    return 0


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}:{seconds:02d}"


class CommandUnavailable(RuntimeError):
    """This installation lacks a module the command needs."""


def _command_part(module: str, name: str) -> Any:
    """Import lazily: `mark` and `list` need the scan modules, `report` does not."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise CommandUnavailable(f"this claimkit installation has no {module}.{name} ({exc})") from None


def _input_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input (a person can fix it), from whichever modules are installed."""
    errors: list[type[BaseException]] = [ReportError, SpecError, PreregistrationError, CalibrationError,
                                         CommandUnavailable, OSError]
    for module, name in (("claimkit.scan", "ScanError"), ("claimkit.mark", "MarkError"),
                         ("claimkit.scaffold", "ScaffoldError")):
        error = _optional_attr(module, name)
        if error is not None:
            errors.append(error)
    return tuple(errors)


def _optional_attr(module: str, name: str) -> type[BaseException] | None:
    import importlib

    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
