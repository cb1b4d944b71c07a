"""Pre-registration: a spec and its inputs locked before results are seen, and runs checked against the lock.

`claimkit preregister fixtures/claims/<paper>.toml` writes `<paper>.lock.json` beside
the spec: the spec's hash, each claim's hash (`ClaimSpec.hash`), the hash of every
input the spec declares outside itself (`[preregistration] inputs`, paths relative to
the spec file: corpus templates, the claim package's code...), the commit and the UTC
time. Commit the lock before running the claims; a verdict then shows whether the
rules and inputs that decided it are the locked ones:

```json
{"status": "preregistered", "lock": "fixtures/claims/demo.lock.json",
 "locked_at": "2026-12-02T09:00:00+00:00", "differs": []}
```

or "not preregistered" with what differs ("no lock file", "claim d-1 changed since
the lock", "input ../corpus changed since the lock", ...). A changed spec or input
breaks the lock for every verdict of the spec: the lock is a statement about the
whole spec, and the differences name the claims and inputs that broke it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from claimkit.provenance import content_hash, display_path, git_state
from claimkit.spec import PaperSpec

LOCK_SCHEMA = 1
LOCK_SUFFIX = ".lock.json"
PREREGISTERED = "preregistered"
NOT_PREREGISTERED = "not preregistered"
NO_LOCK = "no lock file"


class PreregistrationError(ValueError):
    """A lock cannot be written or read; the message names the file and what to do."""


@dataclass(frozen=True)
class Lock:
    """What `claimkit preregister` fixed: the hashes a later run must match."""

    spec: str  # the spec file's name, beside the lock
    paper: str
    spec_hash: str
    claims: Mapping[str, str]  # claim id -> ClaimSpec.hash
    inputs: Mapping[str, str]  # declared path -> content hash
    commit: str | None
    dirty: bool | None
    locked_at: str

    def to_json(self) -> str:
        """Pretty JSON with sorted keys and a final newline: a lock diffs cleanly in review."""
        data = {"schema": LOCK_SCHEMA, "spec": self.spec, "paper": self.paper, "spec_hash": self.spec_hash,
                "claims": dict(self.claims), "inputs": dict(self.inputs), "commit": self.commit,
                "dirty": self.dirty, "locked_at": self.locked_at}
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def lock_path(spec_path: str | Path) -> Path:
    """`fixtures/claims/demo.toml` -> `fixtures/claims/demo.lock.json`."""
    spec_path = Path(spec_path)
    return spec_path.with_name(spec_path.stem + LOCK_SUFFIX)


def input_hashes(spec: PaperSpec) -> dict[str, str | None]:
    """Each declared input's content hash; None for one that does not exist."""
    hashes: dict[str, str | None] = {}
    for declared in spec.preregistration_inputs:
        try:
            hashes[declared] = content_hash(spec.input_path(declared))
        except FileNotFoundError:
            hashes[declared] = None
    return hashes


def make_lock(spec: PaperSpec, *, now: datetime | None = None) -> Lock:
    """The lock of `spec` as it is now; every declared input must exist."""
    inputs = input_hashes(spec)
    missing = [declared for declared, digest in inputs.items() if digest is None]
    if missing:
        raise PreregistrationError(
            f"{spec.path}: [preregistration] input {missing[0]!r} ({spec.input_path(missing[0])}) not found; "
            "inputs are paths relative to the spec file"
        )
    git = git_state(spec.path.resolve().parent)
    return Lock(
        spec=spec.path.name,
        paper=spec.paper,
        spec_hash=spec.hash,
        claims={cid: claim.hash for cid, claim in sorted(spec.claims.items())},
        inputs={k: v for k, v in sorted(inputs.items()) if v is not None},
        commit=git["commit"],
        dirty=git["dirty"],
        locked_at=(now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="seconds"),
    )


def write_lock(spec: PaperSpec, *, now: datetime | None = None) -> tuple[Path, Lock]:
    """Lock `spec` and write the lock beside it, atomically; returns where and what."""
    from claimkit.report.json_report import write_text_atomic

    lock = make_lock(spec, now=now)
    path = lock_path(spec.path)
    try:
        write_text_atomic(path, lock.to_json())
    except OSError as exc:
        raise PreregistrationError(f"{path}: could not write the lock ({exc})") from None
    return path, lock


def read_lock(path: str | Path) -> Lock:
    """A lock file; FileNotFoundError when there is none, PreregistrationError when it is malformed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PreregistrationError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != LOCK_SCHEMA:
        raise PreregistrationError(f"{path}: not a schema-{LOCK_SCHEMA} lock; write it again with `claimkit preregister`")
    for key in ("spec_hash", "locked_at"):
        if not isinstance(data.get(key), str):
            raise PreregistrationError(f"{path}: field {key!r} must be a string")
    for key in ("claims", "inputs"):
        if not isinstance(data.get(key), dict):
            raise PreregistrationError(f"{path}: field {key!r} must be an object")
    return Lock(spec=str(data.get("spec", "")), paper=str(data.get("paper", "")), spec_hash=data["spec_hash"],
                claims=dict(data["claims"]), inputs=dict(data["inputs"]), commit=data.get("commit"),
                dirty=data.get("dirty"), locked_at=data["locked_at"])


# -- a run against the lock -------------------------------------------------------------


@dataclass(frozen=True)
class SpecCheck:
    """One spec compared with its lock, once per run; `for_claim` gives a verdict's field."""

    lock: str  # the lock's path, for people
    locked_at: str | None
    differs: tuple[str, ...]  # everything that breaks the lock, claims first
    claim_entries: Mapping[str, str] = field(default_factory=dict)  # claim id -> its own entry in `differs`

    @property
    def preregistered(self) -> bool:
        return not self.differs

    def for_claim(self, claim_id: str) -> dict[str, Any]:
        """The verdict's `preregistration` field; the claim's own difference is listed first."""
        own = self.claim_entries.get(claim_id)
        differs = ([own] if own else []) + [d for d in self.differs if d != own]
        return {"status": PREREGISTERED if not differs else NOT_PREREGISTERED, "lock": self.lock,
                "locked_at": self.locked_at, "differs": differs}


def check_spec(spec: PaperSpec) -> SpecCheck:
    """Compare `spec` and its declared inputs, as they are now, with the lock beside it."""
    path = lock_path(spec.path)
    shown = display_path(path)
    try:
        lock = read_lock(path)
    except FileNotFoundError:
        return SpecCheck(shown, None, (NO_LOCK,))
    except (PreregistrationError, OSError, UnicodeDecodeError) as exc:
        return SpecCheck(shown, None, (f"lock file unreadable: {exc}",))
    claims = _claim_differences(spec, lock)
    try:
        inputs = _input_differences(input_hashes(spec), lock.inputs)
    except OSError as exc:  # unreadable, not missing: the run goes on, unregistered
        inputs = [f"inputs unreadable: {exc}"]
    differs = list(claims.values()) + inputs
    if spec.hash != lock.spec_hash and not differs:
        differs.append("the spec changed outside its claims and [experiment] since the lock")
    return SpecCheck(shown, lock.locked_at, tuple(differs), claims)


def _claim_differences(spec: PaperSpec, lock: Lock) -> dict[str, str]:
    found = {}
    for cid in sorted(spec.claims.keys() | lock.claims.keys()):
        if cid not in lock.claims:
            found[cid] = f"claim {cid} is not in the lock"
        elif cid not in spec.claims:
            found[cid] = f"claim {cid} is in the lock but no longer in the spec"
        elif spec.claims[cid].hash != lock.claims[cid]:
            found[cid] = f"claim {cid} changed since the lock"
    return found


def _input_differences(now: Mapping[str, str | None], locked: Mapping[str, str]) -> list[str]:
    found = []
    for declared in sorted(now.keys() | locked.keys()):
        if declared not in now:
            found.append(f"input {declared} is in the lock but no longer declared")
        elif now[declared] is None:
            found.append(f"input {declared} not found")
        elif declared not in locked:
            found.append(f"input {declared} is not in the lock")
        elif now[declared] != locked[declared]:
            found.append(f"input {declared} changed since the lock")
    return found
