"""Runs across time: run ids, `history.jsonl`, the `latest` pointer, changed verdicts, drifted numbers.

Layout of a report directory (default `reports/`):

```
reports/<run-id>/verdicts.json   one run (report.md, report.html, plots/ beside it)
reports/latest                   symlink to the newest run directory
reports/latest.txt               the newest run id, only where symlinks cannot be made
reports/latest.json              a copy of the newest run's verdicts.json
reports/history.jsonl            one line per verdict per run
```

History also keeps rules honest: each row carries the claim's hash (`ClaimSpec.hash`),
and a verdict decided under a claim hash other than that of an earlier recorded
verdict of the same claim and profile is flagged "changed after a result was seen",
in its row and in its record, whatever the lock says: a rule re-locked after its
result was known is still a rule chosen after the result.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from claimkit.jsonl import dump_lines, load_lines
from claimkit.report.json_report import (
    VERDICTS_FILE,
    ReportError,
    RunDocument,
    load_document,
    write_document,
    write_text_atomic,
)
from claimkit.verdict import Outcome, Verdict

HISTORY_FILE = "history.jsonl"
LATEST = "latest"
LATEST_TXT = "latest.txt"
LATEST_JSON = "latest.json"


def new_run_id(now: datetime | None = None) -> str:
    """UTC time to the millisecond plus a random suffix: sorts by time, unique across machines."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


# -- history ------------------------------------------------------------------


def history_rows(document: RunDocument) -> list[dict[str, Any]]:
    """One row per verdict: enough to chart a claim across nights without opening every run."""
    rows = []
    for verdict in document.verdicts:
        key = verdict.evidence.estimates[0] if verdict.evidence.estimates else None
        rows.append(
            {
                "run_id": document.run_id,
                "created": document.created,
                "claim_id": verdict.claim_id,
                "profile": verdict.profile,
                "model": verdict.model,
                "outcome": verdict.outcome.value,
                "spec_hash": verdict.spec_hash,
                "claim_hash": verdict.claim_hash or None,
                "changed_after_result": verdict.preregistration.get("changed_after_result"),
                "estimate": None
                if key is None
                else {"name": key.name, "value": key.value, "low": key.low, "high": key.high},
            }
        )
    return rows


def flag_changed_rules(verdicts: Iterable[Verdict], rows: Iterable[dict[str, Any]]) -> tuple[Verdict, ...]:
    """`verdicts`, each one decided under another claim hash than an earlier verdict of the same claim
    and profile in history `rows` flagged: `preregistration["changed_after_result"]` names the latest
    such verdict ({"run_id", "created", "outcome", "claim_hash"}). Rows and verdicts without a claim
    hash (older runs) are not compared."""
    earlier: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("claim_hash"):
            earlier.setdefault((row.get("claim_id"), row.get("profile")), []).append(row)
    flagged = []
    for verdict in verdicts:
        seen = [r for r in earlier.get((verdict.claim_id, verdict.profile), ()) if r["claim_hash"] != verdict.claim_hash]
        if verdict.claim_hash and seen:
            flag = {key: seen[-1].get(key) for key in ("run_id", "created", "outcome", "claim_hash")}
            verdict = replace(verdict, preregistration={**verdict.preregistration, "changed_after_result": flag})
        flagged.append(verdict)
    return tuple(flagged)


def append_history(report_dir: Path, document: RunDocument) -> None:
    lines = dump_lines(history_rows(document))
    with open(report_dir / HISTORY_FILE, "a", encoding="utf-8") as handle:
        handle.write(lines)


def read_history(report_dir: Path) -> list[dict[str, Any]]:
    """Rows of `history.jsonl`; a torn last line (a run killed mid-write) is skipped."""
    path = Path(report_dir) / HISTORY_FILE
    if not path.exists():
        return []
    rows = []
    for line in load_lines(path.read_text(encoding="utf-8")):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def previous_run_id(report_dir: Path, run_id: str) -> str | None:
    """The run recorded in history just before `run_id` (all of history if `run_id` is not
    in it yet) whose verdicts.json still exists. History order, not clocks, decides."""
    order = list(dict.fromkeys(row.get("run_id") for row in read_history(report_dir) if row.get("run_id")))
    earlier = order[: order.index(run_id)] if run_id in order else order
    for candidate in reversed(earlier):
        if (Path(report_dir) / candidate / VERDICTS_FILE).is_file():
            return candidate
    return None


# -- latest -------------------------------------------------------------------


def update_latest(report_dir: Path, document: RunDocument) -> None:
    """Point `latest` at the run (symlink, else latest.txt) and copy its verdicts to latest.json."""
    report_dir = Path(report_dir)
    link = report_dir / LATEST
    text_pointer = report_dir / LATEST_TXT
    tmp = report_dir / f".{LATEST}-{document.run_id}"
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(document.run_id, tmp, target_is_directory=True)
        os.replace(tmp, link)
        text_pointer.unlink(missing_ok=True)
    except (OSError, NotImplementedError):
        tmp.unlink(missing_ok=True)
        if link.is_symlink():  # a stale link would point at an older run
            link.unlink()
        write_text_atomic(text_pointer, document.run_id + "\n")
    write_document(document, report_dir / LATEST_JSON)


def latest_run_id(report_dir: Path) -> str | None:
    report_dir = Path(report_dir)
    link = report_dir / LATEST
    if link.is_symlink() and (link / VERDICTS_FILE).is_file():
        return Path(os.readlink(link)).name
    if (report_dir / LATEST_TXT).is_file():
        return (report_dir / LATEST_TXT).read_text(encoding="utf-8").strip() or None
    if (report_dir / LATEST_JSON).is_file():
        return load_document(report_dir / LATEST_JSON).run_id
    return None


def resolve_run_dir(ref: str | Path, report_dir: str | Path = "reports") -> Path:
    """The run directory that `ref` names: `latest`, a run id, a run directory, a report
    directory (its latest run), or a verdicts.json / latest.json file."""
    report_dir = Path(report_dir)
    path = Path(ref)
    if path.is_dir():
        if (path / VERDICTS_FILE).is_file():
            return path
        if latest_run_id(path) is not None:  # a report directory
            return resolve_run_dir(LATEST, path)
        raise ReportError(f"{path}: no {VERDICTS_FILE} here, and it is not a report directory with a latest run")
    if path.is_file():
        if path.name == VERDICTS_FILE:
            return path.parent
        run_id = load_document(path).run_id  # latest.json or a copy: find its run beside it
        if (path.parent / run_id / VERDICTS_FILE).is_file():
            return path.parent / run_id
        raise ReportError(f"{path}: names run {run_id!r}, but {path.parent / run_id} has no {VERDICTS_FILE}")
    if str(ref) == LATEST:
        run_id = latest_run_id(report_dir)
        if run_id is None:
            raise ReportError(f"{report_dir}: no runs yet (run the claim suite with pytest first)")
        return resolve_run_dir(report_dir / run_id, report_dir)
    if (report_dir / str(ref) / VERDICTS_FILE).is_file():
        return report_dir / str(ref)
    raise ReportError(
        f"{ref}: not a run directory, verdicts file, or run id in {report_dir}/ "
        f"(give 'latest', a path, or one of the run ids in {report_dir / HISTORY_FILE})"
    )


def resolve_verdicts_file(ref: str | Path, report_dir: str | Path = "reports") -> Path:
    """A verdicts file for `ref`: JSON files are taken as they are, anything else via its run."""
    path = Path(ref)
    if path.is_file():
        return path
    if not path.exists() and path.suffix == ".json":
        raise ReportError(f"{path}: report not found (run the claim suite first, or give another run)")
    return resolve_run_dir(ref, report_dir) / VERDICTS_FILE


# -- changes between runs ------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A verdict that differs between two runs, keyed by (claim, profile, base model).

    The key is the base model, not the fine-tuned one: an adapter's name carries
    the hash of its weights, which differ between runs whenever training does (GPU
    kernels are not deterministic), and that must not hide a flipped verdict.
    """

    claim_id: str
    profile: str
    model: str  # the base model (base_model_name)
    before: Outcome | None  # None: the claim had no verdict in the earlier run
    after: Outcome | None  # None: no verdict in the later run
    spec_changed: bool = False  # the claim's pre-registered rule changed too (rule_changed): a stated cause
    note: str | None = None  # why a person expected it (claimkit.report.notes): a stated cause too
    models: tuple[str, str] | None = None  # the full model names before and after, where they differ

    @property
    def kind(self) -> str:
        if self.before is None:
            return "new"
        if self.after is None:
            return "missing"
        return "changed"

    @property
    def unexplained(self) -> bool:
        """An outcome that flipped under the same rules with no note: what nightly CI should stop on."""
        return self.kind == "changed" and not self.spec_changed and self.note is None

    def describe(self) -> str:
        before = self.before.value if self.before else "(no verdict)"
        after = self.after.value if self.after else "(no verdict)"
        text = f"{self.claim_id} [{self.profile}, {self.model}]: {before} -> {after}"
        if self.models is not None:
            text += f" (model {self.models[0]} -> {self.models[1]})"
        if self.spec_changed:
            text += " (claim spec changed)"
        if self.note is not None:
            text += f" (noted: {self.note})"
        return text


def compare(previous: Iterable[Verdict], current: Iterable[Verdict]) -> list[Change]:
    """Verdicts whose outcome differs, appeared or disappeared; sorted by key."""
    before, after = _by_key(previous), _by_key(current)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None and old.outcome == new.outcome:
            continue
        changes.append(
            Change(
                *key,
                before=old.outcome if old else None,
                after=new.outcome if new else None,
                spec_changed=bool(old and new and rule_changed(old, new)),
                models=(old.model, new.model) if old and new and old.model != new.model else None,
            )
        )
    return changes


def rule_changed(old: Verdict, new: Verdict) -> bool:
    """Whether two verdicts of a claim were decided under different rules: their claim hashes differ,
    or, where a record has none (runs before claim hashes), their spec hashes do. A claim whose own
    rule is unchanged is not explained by a revision of another claim's."""
    if old.claim_hash and new.claim_hash:
        return old.claim_hash != new.claim_hash
    return old.spec_hash != new.spec_hash


@dataclass(frozen=True)
class Drift:
    """A verdict whose outcome two runs agree on but whose numbers differ: a rerun that did not reproduce exactly."""

    claim_id: str
    profile: str
    model: str  # the base model (base_model_name)
    differences: tuple[str, ...]  # "<estimate or test>: <before> -> <after>", then "reason" if only the text differs

    def describe(self, most: int = 3) -> str:
        shown = "; ".join(self.differences[:most])
        more = f"; and {len(self.differences) - most} more" if len(self.differences) > most else ""
        return f"{self.claim_id} [{self.profile}, {self.model}]: {shown}{more}"


def drifts(previous: Iterable[Verdict], current: Iterable[Verdict]) -> tuple[list[Drift], int]:
    """Verdicts with the same outcome in both runs whose estimates, tests or reason differ; and how many match exactly.

    Numbers are compared exactly: seeded runs of unchanged code on the same machine
    should give the same bits, so any difference says that something in the run is
    not reproducible (reports/gpu-20261201-reproducible: two cold GPU runs that were not).
    """
    before, after = _by_key(previous), _by_key(current)
    found, identical = [], 0
    for key in sorted(before.keys() & after.keys()):
        old, new = before[key], after[key]
        if old.outcome != new.outcome:
            continue  # a change, which compare() reports
        differences = _number_differences(old, new)
        if not differences and old.reason != new.reason:
            differences = ["reason: the same numbers, other words"]
        if differences:
            found.append(Drift(*key, differences=tuple(differences)))
        else:
            identical += 1
    return found, identical


def _number_differences(old: Verdict, new: Verdict) -> list[str]:
    out = []
    for kind, items_old, items_new, fields in (
        ("estimate", old.evidence.estimates, new.evidence.estimates, ("value", "low", "high", "n", "successes")),
        ("test", old.evidence.tests, new.evidence.tests, ("p_value", "statistic", "p_adjusted")),
    ):
        named_old, named_new = {i.name: i for i in items_old}, {i.name: i for i in items_new}
        for name in sorted(named_old.keys() | named_new.keys()):
            a, b = named_old.get(name), named_new.get(name)
            if a is None or b is None:
                out.append(f"{kind} {name!r}: {'absent' if a is None else 'present'} -> {'absent' if b is None else 'present'}")
                continue
            changed = [f for f in fields if not _same(getattr(a, f), getattr(b, f))]
            if changed:
                first = changed[0]
                out.append(f"{kind} {name!r} {first}: {_short(getattr(a, first))} -> {_short(getattr(b, first))}")
    return out


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)  # NaN is NaN here


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _by_key(verdicts: Iterable[Verdict]) -> dict[tuple[str, str, str], Verdict]:
    """Verdicts by (claim, profile, base model): the key under which two runs' verdicts are the same verdict."""
    return {(v.claim_id, v.profile, base_model_name(v.model)): v for v in verdicts}


def base_model_name(model: str) -> str:
    """The model a verdict's model was fine-tuned from: claimkit names fine-tuned models `<base>+<kind>:<id>`."""
    return model.split("+", 1)[0]
