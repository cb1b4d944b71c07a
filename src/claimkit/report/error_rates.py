"""The decision rules' simulated error rates beside the verdicts they decided.

A verdict is as trustworthy as its rule's error rates (claimkit.calibration): how
often the rule supports a false claim, refutes a true one, and supports one true at
the paper's effect. For each paper of a run, this finds the spec its verdicts were
decided by (by `paper`, in the run's spec directory) and the table `claimkit
calibrate` wrote beside it (`<spec>.calibration.json`), and keeps the table's rows for
the run's profiles -- only if the table was simulated for the spec version the
verdicts name (`spec_hash`); numbers of another version are not shown as if they
applied. Anything missing or malformed becomes one line of the report, never an error.

It also bounds the number of false verdicts to expect in the run. A claim is either
false, and then wrongly supported with chance at most its row's false support, or
true, and then wrongly refuted with chance at most its false refutation; so the sum,
over the claims the run put to the test (inconclusive ones too: they could have come
out false), of the larger of the two bounds the expected number of false verdicts --
as far as the simulated variance levels cover the real ones. It is a bound before the
outcomes are seen. Summing only the supported verdicts' false-support rates would not
be one: the chance that a given supported verdict is false depends on how many of the
tested claims were false, which no simulation knows.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from claimkit.calibration_table import TABLE_HEADERS, CalibrationError, read_table, table_cells, table_path
from claimkit.verdict import Outcome, Verdict

TITLE = "Decision rules' simulated error rates"
# Verdicts whose rule was applied to data; a claim a manipulation check kept from the test has no error to count.
PUT_TO_TEST = (Outcome.SUPPORTED, Outcome.REFUTED, Outcome.INCONCLUSIVE)


@dataclass(frozen=True)
class PaperRates:
    """What the report says of one paper's rules: its table's rows for the run's profiles, and a note.

    `note` is one line a reader needs: why there are no rows (no table, another spec
    version, a malformed file), or which verdicts the rows do not cover. `counted` are
    the verdicts the rows cover (same spec version, a row for their claim and profile);
    `expected_false` bounds their false verdicts; `tested` counts the paper's verdicts
    that were put to the test, covered or not.
    """

    paper: str
    table: str = ""  # where the table is, or would be
    reps: int | None = None
    rows: tuple[Mapping[str, Any], ...] = ()
    note: str = ""
    counted: tuple[Verdict, ...] = ()
    expected_false: float = 0.0
    tested: int = 0

    @property
    def broken(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(r for r in self.rows if not r["within_bounds"])


def error_rates(verdicts: Sequence[Verdict], specs_dir: str | Path) -> tuple[PaperRates, ...]:
    """One entry per paper of `verdicts` (sorted), from the tables beside the specs in `specs_dir`."""
    specs_dir = Path(specs_dir)
    by_paper: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        by_paper.setdefault(verdict.paper, []).append(verdict)
    specs, unreadable = _specs_by_paper(specs_dir)
    out = []
    for paper, ours in sorted(by_paper.items()):
        try:
            entry = _paper_rates(paper, ours, specs.get(paper), specs_dir, unreadable)
        except (OSError, ValueError, TypeError, KeyError) as exc:  # a table that passed its check but still surprises
            entry = PaperRates(paper, note=f"its calibration table could not be shown ({exc!r})")
        out.append(replace(entry, tested=sum(v.outcome in PUT_TO_TEST for v in ours)))
    return tuple(out)


def expected_false_line(entries: Sequence[PaperRates]) -> str:
    """The run's bound on false verdicts, in a sentence (empty when no table applied to any verdict)."""
    counted = [v for e in entries for v in e.counted]
    if not counted:
        return ""
    bound = sum(e.expected_false for e in entries)
    outcomes = Counter(v.outcome for v in counted)
    listing = ", ".join(f"{outcomes[o]} {o.value}" for o in PUT_TO_TEST if outcomes[o])
    text = (f"At the simulated rates, at most {bound:.2f} false verdicts are expected among these {len(counted)} "
            f"claim decisions ({listing}): each claim adds the larger of its rule's false-support and "
            f"false-refutation rates, whichever way its truth lies. This bounds the count before the outcomes are "
            f"seen; it is not the chance that a given verdict is wrong.")
    broken = {(r["claim"], r["profile"]) for e in entries for r in e.broken}
    risky = [f"{v.claim_id} [{v.profile}]" for v in counted if (v.claim_id, v.profile) in broken]
    if risky:
        text += (f" {len(risky)} of them were decided by a rule whose simulated error rates break the spec's "
                 f"bounds: {', '.join(risky)}.")
    left_out = sum(e.tested for e in entries) - len(counted)
    if left_out:
        text += f" {left_out} verdict(s) without an applicable row are not counted."
    return text


def describe_reps(entry: PaperRates) -> str:
    """"1000 draws per point (Monte Carlo SE 0.007 at a rate of 0.05)"."""
    if not entry.reps:
        return "draws per point not recorded"
    return f"{entry.reps} draws per point (Monte Carlo SE {(0.05 * 0.95 / entry.reps) ** 0.5:.3f} at a rate of 0.05)"


def table(entry: PaperRates) -> tuple[tuple[str, ...], list[list[str]]]:
    """The entry's rows as cells under their headers, as `claimkit calibrate` prints them."""
    return TABLE_HEADERS, [table_cells(r) for r in entry.rows]


INTRO = ("Each rule's error rates, simulated at its profile's n and seeds before any result was seen "
         "(`claimkit calibrate`): false support is the chance that it supports a false claim (at the claim's edge, "
         "the worst over the spec's variance levels), false refutation the chance that it refutes a true one, "
         "power the chance that it supports a claim true at the paper's effect.")


# -- finding the spec and its table ------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    path: Path
    calibrated: bool  # declares [calibration]: its rules can be simulated


def _specs_by_paper(specs_dir: Path) -> tuple[dict[str, _Spec], list[str]]:
    """Spec files by their `paper`; read as plain TOML, so a spec that fails validation is still found."""
    found: dict[str, _Spec] = {}
    unreadable: list[str] = []
    if not specs_dir.is_dir():
        return found, unreadable
    for path in sorted(specs_dir.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            unreadable.append(path.name)
            continue
        if isinstance(data.get("paper"), str):
            found.setdefault(data["paper"], _Spec(path, "calibration" in data))
    return found, unreadable


def _paper_rates(paper: str, verdicts: Sequence[Verdict], found: _Spec | None, specs_dir: Path,
                 unreadable: Sequence[str]) -> PaperRates:
    if found is None:
        where = "is not a directory" if not specs_dir.is_dir() else f"holds no spec of paper {paper!r}"
        also = f" (unreadable: {', '.join(unreadable)})" if unreadable else ""
        return PaperRates(paper, note=f"the claim spec directory {specs_dir} {where}{also}: no calibration table "
                                      "could be looked up")
    spec = found.path
    table = str(table_path(spec))
    try:
        document = read_table(spec)
    except CalibrationError as exc:
        return PaperRates(paper, table, note=f"its calibration table could not be read: {exc}")
    if document is None and not found.calibrated:
        return PaperRates(paper, table, note=f"its spec {spec} declares no [calibration]: its rules' error rates "
                                             "are not simulated")
    if document is None:
        return PaperRates(paper, table, note=f"no calibration table beside {spec} (`claimkit calibrate {spec}` "
                                             "writes one)")
    hashes = sorted({v.spec_hash for v in verdicts})
    if document["spec_hash"] not in hashes:
        return PaperRates(paper, table, note=(
            f"calibration table is for another version of the spec (table {_short(document['spec_hash'])}, "
            f"verdicts {', '.join(_short(h) for h in hashes)}): its numbers do not apply to these verdicts; "
            f"`claimkit calibrate {spec}` simulates the spec as it is now"))
    reps = document.get("reps") if isinstance(document.get("reps"), int) else None
    profiles = sorted({v.profile for v in verdicts})
    rows = tuple(r for r in document["rows"] if r["profile"] in profiles)
    if not rows:
        return PaperRates(paper, table, reps, note=f"its calibration table has no rows for profile(s) "
                                                   f"{', '.join(profiles)}")
    by_key = {(r["claim"], r["profile"]): r for r in rows}
    applies = [v for v in verdicts if v.spec_hash == document["spec_hash"] and v.outcome in PUT_TO_TEST]
    counted = tuple(v for v in applies if (v.claim_id, v.profile) in by_key)
    worst = {key: max(r["false_support"], r["false_refute"]) for key, r in by_key.items()}
    expected = sum(worst[(v.claim_id, v.profile)] for v in counted)
    notes = []
    other = sum(v.spec_hash != document["spec_hash"] for v in verdicts)
    if other:
        notes.append(f"{other} verdict(s) were decided under another version of the spec: the table does not apply "
                     "to them")
    uncovered = [f"{v.claim_id} [{v.profile}]" for v in applies if (v.claim_id, v.profile) not in by_key]
    if uncovered:
        notes.append(f"no row for {', '.join(uncovered)} (no declared rule parts, or not simulated)")
    return PaperRates(paper, table, reps, rows, "; ".join(notes), counted, expected)


def _short(value: str) -> str:
    """"sha256:0123456789ab": enough of a hash to tell two apart in a sentence."""
    algorithm, sep, digest = value.partition(":")
    return f"{algorithm}:{digest[:12]}" if sep else value[:12]
