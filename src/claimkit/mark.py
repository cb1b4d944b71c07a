"""Write a run's verdicts into a paper's scan file (`claimkit mark`).

Each top-level verdict of the report lands in the scan claim its spec quotes,
as one record in `claim["verification"]["records"]`; verdicts of sub-claims go
inside their parent's record. A record decided by a claimkit that records them
also says whether the claim was pre-registered (`preregistration`, as in the
verdict) and where it came from (`provenance`: commit, dirty, claimkit's and the
claim package's source hashes, device, package versions). One record is kept per (profile, model), so runs
on different models sit side by side and a new run on the same model replaces
its old record. Nothing else in the file changes: key order, unknown fields,
unicode and layout are kept, the write is atomic, and marking twice with the
same report leaves the file byte for byte as it was.
"""

from __future__ import annotations

import copy
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from claimkit.provenance import describe_device
from claimkit.scan import Scan, ScanError, describe_paper, match_claim, parse_scan, specs_for
from claimkit.spec import ClaimSpec, PaperSpec, load_specs
from claimkit.verdict import Outcome, Verdict

REPORT_SCHEMA = 1

SUPPORTED_FROM_OUTCOME: Mapping[str, str | None] = {
    Outcome.SUPPORTED.value: "strong",
    Outcome.REFUTED.value: "refuted",
    Outcome.INCONCLUSIVE.value: None,
    Outcome.NOT_TESTED.value: None,
}
"""What `update_supported=True` writes into a claim's `supported` field.

A replication that supports a claim under a pre-registered rule is the
strongest evidence a scan can cite, hence "strong"; a refuted claim becomes
"refuted"; an inconclusive verdict (None) says nothing about the claim, so the
reviewer's value stays. The claim's records are read together: the field is
only changed when every decisive record (of any profile and model) agrees, so
a model that refutes what another supports leaves the reviewer's word standing.
"""


class MarkError(ValueError):
    """A report cannot be marked into a scan; the message says why and what to do."""


@dataclass(frozen=True)
class MarkResult:
    """What `mark_scan` did: whether the file changed, which scan claims carry a
    verdict of this report (scan claim ids), and the spec claims it could not place."""

    changed: bool
    marked: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def mark_scan(
    scan_path: str | Path,
    report_path: str | Path,
    *,
    specs_dir: str | Path,
    update_supported: bool = False,
    now: datetime | None = None,
) -> MarkResult:
    """Mark the verdicts of `report_path` (a verdicts.json) into the scan at `scan_path`.

    Refuses, leaving the file untouched, a report decided under another version
    of the paper's claim spec, a report about another paper, and a report with
    no verdicts for this paper. `now` (default: the current UTC time) stamps the
    `marked` field of a record only when the record itself changes.
    """
    scan_path = Path(scan_path)
    try:
        original = scan_path.read_bytes()
    except FileNotFoundError:
        raise ScanError(f"{scan_path}: scan file not found") from None
    scan = parse_scan(original, scan_path)
    report = _read_report(Path(report_path))
    spec = _spec_for_report(scan, report, load_specs(specs_dir), specs_dir)
    verdicts = [v for v in report.verdicts if v.paper == spec.paper]
    _check_spec_hash(spec, verdicts, report.path)

    stamp = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    raw = copy.deepcopy(scan.raw)
    marked: list[str] = []
    skipped: list[tuple[str, str]] = []
    placed: dict[tuple[int, str, str], str] = {}
    tops, subs = _group(spec, verdicts, skipped)
    for (claim_key, profile, model), verdict in tops.items():
        children = subs.pop((claim_key, profile, model), [])
        text = spec.claims[claim_key].scan_claim or verdict.scan_claim
        try:
            target = match_claim(scan, text)
        except ScanError as exc:
            reason = str(exc)
        else:
            slot = (target.index, profile, model)
            reason = (f"scan claim {target.id} already carries {placed[slot]}'s verdict for profile "
                      f"{profile!r}, model {model!r}") if slot in placed else ""
        if reason:
            skipped.append((claim_key, reason))
            skipped.extend((sub.claim_id, f"its parent {claim_key!r} was not marked") for sub in children)
            continue
        placed[slot] = claim_key
        record = _record(verdict, children, report, stamp)
        _put_record(raw["claims"][target.index], record, f"{scan_path}: claims[{target.index}]")
        if target.id not in marked:
            marked.append(target.id)
    for (top, profile, model), orphans in subs.items():
        for verdict in orphans:
            skipped.append((verdict.claim_id, f"its parent {top!r} has no verdict in this report for "
                                              f"profile {profile!r}, model {model!r}"))

    if update_supported:
        for claim in scan.claims:
            if claim.id in marked:
                _update_supported(raw["claims"][claim.index])

    marked.sort(key=lambda cid: scan.claim(cid).index)
    if raw == scan.raw:
        return MarkResult(changed=False, marked=marked, skipped=skipped)
    try:
        data = scan.style.encode(raw)
    except (ValueError, UnicodeEncodeError) as exc:
        raise MarkError(f"{scan_path}: the marked scan cannot be written as JSON ({exc}); file unchanged") from None
    _write_atomic(scan_path, data, expected=original)
    return MarkResult(changed=True, marked=marked, skipped=skipped)


# -- the report ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Report:
    path: Path
    given: str
    created: str
    claimkit_version: str
    verdicts: tuple[Verdict, ...]


def _read_report(path: Path) -> _Report:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MarkError(f"{path}: report not found (pass a run's verdicts.json or reports/latest.json)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MarkError(f"{path}: not a readable JSON report ({exc}); re-run the suite to write it again") from None
    if not isinstance(data, dict) or data.get("schema") != REPORT_SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise MarkError(f"{path}: field 'schema' must be {REPORT_SCHEMA}, got {got!r}: not a claimkit verdicts.json")
    created = data.get("created")
    if not isinstance(created, str) or not created:
        raise MarkError(f"{path}: field 'created' must be a non-empty string")
    raw_verdicts = data.get("verdicts")
    if not isinstance(raw_verdicts, list):
        raise MarkError(f"{path}: field 'verdicts' must be a list")
    verdicts = []
    for i, item in enumerate(raw_verdicts):
        try:
            verdicts.append(Verdict.from_dict(item))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MarkError(f"{path}: verdicts[{i}] is malformed ({exc!r})") from None
    return _Report(path, str(path), created, str(data.get("claimkit_version") or ""), tuple(verdicts))


def _spec_for_report(scan: Scan, report: _Report, specs: Mapping[str, PaperSpec], specs_dir: Any) -> PaperSpec:
    """The claim spec of the scan's paper that the report has verdicts for."""
    if not report.verdicts:
        raise MarkError(f"{report.path}: the report has no verdicts; nothing to mark")
    report_papers = sorted({v.paper for v in report.verdicts})
    mine = [s for s in specs_for(scan, specs) if s.paper in report_papers]
    if mine:
        return mine[0]  # load_specs keeps paper names unique; two specs of one arXiv id would be odd
    scan_paper = describe_paper(scan.paper)
    described = [
        f"{p!r} ({specs[p].title!r}" + (f", arXiv {specs[p].arxiv_id})" if specs[p].arxiv_id else ")")
        if p in specs else f"{p!r} (no claim spec in {specs_dir})"
        for p in report_papers
    ]
    if not specs_for(scan, specs):
        raise MarkError(
            f"{scan.path}: no claim spec in {specs_dir} is about this scan's paper {scan_paper}; "
            f"the report {report.path} has verdicts for {', '.join(described)}"
        )
    raise MarkError(
        f"{report.path}: the report is about another paper: it has verdicts for {', '.join(described)}, "
        f"but {scan.path} is the scan of {scan_paper}; pass this paper's report"
    )


def _check_spec_hash(spec: PaperSpec, verdicts: list[Verdict], report: Path) -> None:
    stale = [v for v in verdicts if v.spec_hash != spec.hash]
    if stale:
        hashes = ", ".join(sorted({v.spec_hash or "none" for v in stale}))
        ids = ", ".join(sorted({v.claim_id for v in stale}))
        raise MarkError(
            f"{report}: verdicts of {ids} were decided under another claim spec ({hashes}) than the "
            f"current {spec.path} ({spec.hash}); re-run the claims under the current spec, or mark with "
            "the spec that decided them"
        )


def _group(
    spec: PaperSpec, verdicts: list[Verdict], skipped: list[tuple[str, str]]
) -> tuple[dict[tuple[str, str, str], Verdict], dict[tuple[str, str, str], list[Verdict]]]:
    """Top-level verdicts by (claim, profile, model), the latest winning; sub-claim
    verdicts by their top-level ancestor, profile and model."""
    tops: dict[tuple[str, str, str], Verdict] = {}
    subs: dict[tuple[str, str, str], dict[str, Verdict]] = {}
    for verdict in verdicts:
        claim = spec.claims.get(verdict.claim_id)
        if claim is None:
            skipped.append((verdict.claim_id, f"no claim of that id in {spec.path}"))
            continue
        top = _top_level(spec, claim)
        if top.id == claim.id:
            _keep_latest(tops, (claim.id, verdict.profile, verdict.model), verdict)
        else:
            _keep_latest(subs.setdefault((top.id, verdict.profile, verdict.model), {}), claim.id, verdict)
    ordered_subs = {key: sorted(found.values(), key=lambda v: v.claim_id) for key, found in subs.items()}
    return tops, ordered_subs


def _keep_latest(into: dict[Any, Verdict], key: Any, verdict: Verdict) -> None:
    if key not in into or verdict.created >= into[key].created:
        into[key] = verdict


def _top_level(spec: PaperSpec, claim: ClaimSpec) -> ClaimSpec:
    seen = {claim.id}
    while claim.parent is not None and claim.parent in spec.claims and claim.parent not in seen:
        claim = spec.claims[claim.parent]
        seen.add(claim.id)
    return claim


# -- records ------------------------------------------------------------------------


def _record(verdict: Verdict, subs: list[Verdict], report: _Report, stamp: str) -> dict[str, Any]:
    """The scan's record of one verdict; `date` is the report's, so re-marking is stable.

    Pre-registration and provenance are written only where the verdict has them, so a
    report of an older claimkit marks exactly as it did.
    """
    return {
        "verdict": verdict.outcome.value,
        "profile": verdict.profile,
        "model": verdict.model,
        "reason": verdict.reason,
        "estimates": _estimates(verdict),
        "tests": _tests(verdict),
        "n": verdict.n,
        "seeds": list(verdict.seeds),
        "date": report.created,
        "claimkit_version": verdict.claimkit_version or report.claimkit_version,
        "spec_hash": verdict.spec_hash,
        **_registration(verdict),
        **({"provenance": _provenance(verdict.provenance)} if verdict.provenance else {}),
        "report": report.given,
        "claim_id": verdict.claim_id,
        "sub_claims": [
            {
                "claim_id": sub.claim_id,
                "verdict": sub.outcome.value,
                "reason": sub.reason,
                "estimates": _estimates(sub),
                "tests": _tests(sub),
                "n": sub.n,
                **_registration(sub),
            }
            for sub in subs
        ],
        "marked": stamp,
    }


def _registration(verdict: Verdict) -> dict[str, Any]:
    """`claim_hash` and `preregistration`, where the verdict records them."""
    out: dict[str, Any] = {}
    if verdict.claim_hash:
        out["claim_hash"] = verdict.claim_hash
    if verdict.preregistration:
        out["preregistration"] = dict(verdict.preregistration)
    return out


def _provenance(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The essentials of a verdict's provenance: enough to say whether two records can agree to the bit."""
    return {
        "commit": provenance.get("commit"),
        "dirty": provenance.get("dirty"),
        "diff_hash": provenance.get("diff_hash"),
        "claimkit_source": provenance.get("claimkit_source"),
        "claim_code": provenance.get("claim_code"),
        "device": describe_device(provenance.get("device")),
        "versions": {k: v for k, v in (provenance.get("versions") or {}).items() if v is not None},
    }


def _estimates(verdict: Verdict) -> list[dict[str, Any]]:
    return [
        {"name": e.name, "value": _number(e.value), "low": _number(e.low), "high": _number(e.high),
         "n": e.n, "successes": e.successes}
        for e in verdict.evidence.estimates
    ]


def _tests(verdict: Verdict) -> list[dict[str, Any]]:
    return [
        {"name": t.name, "p": _number(t.p_value), "p_adjusted": _number(t.p_adjusted)}
        for t in verdict.evidence.tests
    ]


def _number(value: Any) -> Any:
    """JSON has no NaN or infinity: those are written as null, as in the report."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def _put_record(claim: dict[str, Any], record: dict[str, Any], where: str) -> None:
    """Add the record, or replace the one of the same profile and model (keeping its
    place, and its `marked` stamp when nothing else differs)."""
    verification = claim.setdefault("verification", {"records": []})
    records = verification.setdefault("records", []) if isinstance(verification, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise MarkError(
            f"{where}.verification: expected an object with a 'records' list of objects; "
            "fix or remove it by hand, then mark again"
        )
    for i, old in enumerate(records):
        if (old.get("profile"), old.get("model")) == (record["profile"], record["model"]):
            if _without(old, "marked") != _without(record, "marked"):
                records[i] = record
            return
    records.append(record)


def _without(record: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != key}


def _update_supported(claim: dict[str, Any]) -> None:
    outcomes = {r.get("verdict") for r in claim["verification"]["records"]}
    decisive = {SUPPORTED_FROM_OUTCOME.get(o) for o in outcomes} - {None}
    if len(decisive) == 1:
        claim["supported"] = decisive.pop()


# -- writing ------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes, *, expected: bytes) -> None:
    """Replace `path` by `data` all at once: a reader sees the old file or the new one.

    The temp file lives beside `path` (same file system, so `os.replace` is
    atomic), is fsynced before the rename, and the directory after it. If the
    file changed since it was read (another `mark`), nothing is written.
    """
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        if path.read_bytes() != expected:
            raise MarkError(f"{path}: the scan changed while it was being marked; run `claimkit mark` again")
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise MarkError(f"{path}: could not write the marked scan ({exc}); the file is unchanged") from None
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; platforms that cannot open a directory skip it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
