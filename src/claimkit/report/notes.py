"""Verdict changes that a person expects, and why: the notes file nightly CI reads.

A verdict that flips between two runs under an unchanged claim spec stops the
nightly job (`claimkit report --fail-on-change`) unless a note explains it.
Notes are committed (default `fixtures/verdict-notes.toml`), one table each:

```toml
[[change]]
claim = "wf-1"
profile = "smollm2-135m"
from = "inconclusive"   # optional: the verdict before (default: any)
to = "supported"
model = "..."           # optional: only this base model, as in the report (default: any)
why = "n raised from 100 to 300 per arm (43b1821): enough power to decide"
```
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from claimkit.report.history import Change, base_model_name
from claimkit.report.json_report import ReportError
from claimkit.toml_file import read_toml
from claimkit.verdict import Outcome

NOTES_FILE = "fixtures/verdict-notes.toml"
_REQUIRED = ("claim", "profile", "to", "why")
_OPTIONAL = ("from", "model")
_OUTCOMES = ", ".join(o.value for o in Outcome)


class NotesError(ReportError):
    """The notes file is malformed; the message names the file, the entry and the field."""


@dataclass(frozen=True)
class ChangeNote:
    """One expected verdict change, for a claim on a profile (and optionally one model)."""

    claim_id: str
    profile: str
    after: Outcome
    why: str
    before: Outcome | None = None  # None: from any verdict
    model: str | None = None  # None: any model
    where: str = ""  # "FILE: change[i]", for messages

    def explains(self, change: Change) -> bool:
        return (
            change.kind == "changed"
            and (change.claim_id, change.profile) == (self.claim_id, self.profile)
            and change.after is self.after
            and (self.before is None or change.before is self.before)
            and (self.model is None or change.model == base_model_name(self.model))
        )


def load_notes(path: str | Path) -> tuple[ChangeNote, ...]:
    """The notes of a TOML notes file, each checked (see the module docstring for the format)."""
    path = Path(path)
    data = read_toml(path, NotesError, "notes file")
    unknown = sorted(set(data) - {"change"})
    if unknown:
        raise NotesError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; notes are [[change]] tables")
    entries = data.get("change", [])
    if not isinstance(entries, list):
        raise NotesError(f"{path}: 'change' must be an array of tables ([[change]]), not a single table")
    return tuple(_note(entry, f"{path}: change[{i}]") for i, entry in enumerate(entries))


def _note(entry: dict[str, Any], where: str) -> ChangeNote:
    missing = [key for key in _REQUIRED if key not in entry]
    if missing:
        raise NotesError(f"{where}: field(s) {', '.join(missing)} missing; a note needs {', '.join(_REQUIRED)}")
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise NotesError(f"{where}: unknown field(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(_REQUIRED + _OPTIONAL)}")
    for key in ("claim", "profile", "why", *(k for k in ("model",) if k in entry)):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise NotesError(f"{where}: field '{key}' must be a non-empty string, got {entry[key]!r}")
    return ChangeNote(
        claim_id=entry["claim"],
        profile=entry["profile"],
        after=_outcome(entry["to"], where, "to"),
        why=entry["why"].strip(),
        before=_outcome(entry["from"], where, "from") if "from" in entry else None,
        model=entry.get("model"),
        where=where,
    )


def _outcome(value: Any, where: str, key: str) -> Outcome:
    try:
        return Outcome(value)
    except ValueError:
        raise NotesError(f"{where}: field '{key}' must be one of {_OUTCOMES}, got {value!r}") from None


def apply_notes(changes: Iterable[Change], notes: Sequence[ChangeNote]) -> list[Change]:
    """`changes` with the first note that explains each attached (`Change.note`)."""
    noted = []
    for change in changes:
        note = next((n for n in notes if n.explains(change)), None)
        noted.append(replace(change, note=note.why) if note else change)
    return noted


def unused_notes(changes: Iterable[Change], notes: Sequence[ChangeNote]) -> list[ChangeNote]:
    """Notes that explain none of `changes`: stale once their change has landed."""
    changes = list(changes)
    return [n for n in notes if not any(n.explains(c) for c in changes)]
