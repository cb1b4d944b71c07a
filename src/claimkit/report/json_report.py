"""verdicts.json: the machine-readable record of one run (schema version 1).

```
{"schema": 1, "run_id": "...", "created": "...", "claimkit_version": "...",
 "command": "pytest claims/ -n 2", "profiles": ["organism"],
 "provenance": {"commit": "...", "dirty": false, "versions": {...}, "device": {...}, ...},
 "verdicts": [Verdict.to_dict(), ...],
 "artifacts": {"run_dir": "<run-id>", "report_md": "<run-id>/report.md", ...}}
```

`provenance` (the run's, from the process that wrote it: `claimkit.provenance`)
came later; a document without it reads as one with an empty mapping.

Artifact paths are relative to the report directory (the folder that holds
`history.jsonl`, `latest` and `latest.json`), so they read the same from a run's
own `verdicts.json` and from its copy `latest.json`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from claimkit.verdict import Verdict

SCHEMA = 1
VERDICTS_FILE = "verdicts.json"


class ReportError(ValueError):
    """A report is missing or malformed; the message names the file and what to do."""


@dataclass(frozen=True)
class RunDocument:
    """One run's verdicts and where its human-readable reports are."""

    run_id: str
    created: str
    claimkit_version: str
    command: str
    profiles: tuple[str, ...]
    verdicts: tuple[Verdict, ...]
    artifacts: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    #: profile -> what its model is and what it can and cannot test (the profile file's description and about)
    profile_notes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "created": self.created,
            "claimkit_version": self.claimkit_version,
            "command": self.command,
            "profiles": list(self.profiles),
            "provenance": dict(self.provenance),
            "profile_notes": {k: dict(v) for k, v in self.profile_notes.items()},
            "verdicts": [v.to_dict() for v in self.verdicts],
            "artifacts": dict(self.artifacts),
        }


def document_from_dict(data: Any, where: str = "verdicts.json") -> RunDocument:
    """Validate and read a schema-1 document; errors name `where` and the field."""
    if not isinstance(data, dict):
        raise ReportError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if data.get("schema") != SCHEMA:
        raise ReportError(
            f"{where}: field 'schema' must be {SCHEMA}, got {data.get('schema')!r} "
            "(written by another claimkit version? re-run the suite to write a fresh report)"
        )
    for key in ("run_id", "created"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ReportError(f"{where}: field {key!r} must be a non-empty string")
    raw_verdicts = data.get("verdicts")
    if not isinstance(raw_verdicts, list):
        raise ReportError(f"{where}: field 'verdicts' must be a list")
    verdicts = []
    for i, raw in enumerate(raw_verdicts):
        try:
            verdicts.append(Verdict.from_dict(raw))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReportError(f"{where}: verdicts[{i}] is malformed: {exc!r}") from None
    return RunDocument(
        run_id=data["run_id"],
        created=data["created"],
        claimkit_version=str(data.get("claimkit_version", "")),
        command=str(data.get("command", "")),
        profiles=tuple(data.get("profiles") or ()),
        verdicts=tuple(verdicts),
        profile_notes=_profile_notes(data.get("profile_notes"), where),
        artifacts=dict(data.get("artifacts") or {}),
        provenance=dict(data["provenance"]) if isinstance(data.get("provenance"), dict) else {},
    )


def load_document(path: str | Path) -> RunDocument:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: report not found (run the claim suite first, or give another run)") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a directory; give a run directory's {VERDICTS_FILE} or the run directory") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON: {exc}") from None
    return document_from_dict(data, str(path))


def write_document(document: RunDocument, path: str | Path) -> None:
    """Write atomically, so a reader never sees half a report."""
    write_text_atomic(Path(path), json.dumps(document.to_dict(), indent=2, ensure_ascii=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; reports are for everyone
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _profile_notes(raw: Any, where: str) -> dict[str, dict[str, str]]:
    """A document's profile notes (absent in older documents: none)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ReportError(f"{where}: field 'profile_notes' must map profile names to tables of text")
    return {str(k): {str(a): str(b) for a, b in v.items()} for k, v in raw.items()}
