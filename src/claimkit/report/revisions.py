"""Spec revisions between two runs: which spec decided each run's verdicts, and why a claim's differ.

When two runs decided a paper's claims under different spec hashes, their verdicts were
decided by different rules, and a reader comparing them must see that before the verdicts
that changed, with the reason for each claim's new rule: the `[[changelog]]` entries of the
newer spec (`claimkit.spec.ChangelogEntry`), written before the revision's results were seen.
The specs are found by paper and hash in the specs directory and its `archive/` folder, where
a replaced spec stays byte for byte; a hash found in neither is named, because the rules
behind those verdicts can then not be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from claimkit.provenance import short_hash
from claimkit.report.history import base_model_name, drifts, rule_changed
from claimkit.report.json_report import RunDocument
from claimkit.spec import ChangelogEntry, PaperSpec, SpecError, load_spec
from claimkit.verdict import Verdict

ARCHIVE_DIR = "archive"  # replaced specs, beside the current ones (fixtures/claims/archive/README.md)
HASH_DIGITS = 8


@dataclass(frozen=True)
class ClaimRevision:
    """A verdict of a revised paper (claim, profile, base model) whose rule or verdict differs between the runs."""

    claim_id: str
    profile: str
    model: str
    verdict: str  # "supported -> refuted", "refuted in both, other numbers", "new: supported", ...
    rule: str  # "its rule changed", "its rule is unchanged", ...; "" for a verdict only one run has
    entries: tuple[int, ...]  # the newer spec's changelog entries that name the claim (1-based positions)
    changelog_known: bool = True  # False: the newer spec was not found, so what it says is unknown

    def describe(self) -> str:
        parts = [self.verdict] + ([self.rule] if self.rule else [])
        if not self.changelog_known:
            parts.append("changelog unknown")
        elif self.entries:
            parts.append("changelog " + ", ".join(str(i) for i in self.entries))
        elif self.rule == "its rule changed":
            parts.append("but no changelog entry names it")
        else:
            parts.append("no changelog entry names it")
        return f"{self.claim_id} [{self.profile}, {self.model}]: {'; '.join(parts)}"


@dataclass(frozen=True)
class SpecRevision:
    """A paper whose verdicts the two runs decided under different specs."""

    paper: str
    before: tuple[str, ...]  # spec hashes of the paper's verdicts in the earlier run (usually one)
    after: tuple[str, ...]  # and in the later run
    files: Mapping[str, Path | None]  # each hash's spec file; None: found in neither place
    newer: Path | None  # the spec whose changelog is shown; None when no spec of the two was found
    changelog: Mapping[int, ChangelogEntry]  # entries the claims name, by 1-based position in `newer`
    claims: tuple[ClaimRevision, ...]
    problems: tuple[str, ...] = ()  # hashes that could not be found, and why

    def headline(self) -> str:
        """"spec of <paper> changed: <old> -> <new> (<old file> -> <new file>)"."""
        text = f"spec of {self.paper} changed: {_hashes(self.before)} -> {_hashes(self.after)}"
        files = [", ".join(str(self.files[h] or "not found") for h in side) for side in (self.before, self.after)]
        return f"{text} ({files[0]} -> {files[1]})"

    def entry_lines(self) -> list[tuple[str, str]]:
        """(what changed, why) for each changelog entry the claims name, in the spec's order."""
        return [(f"changelog {i} (version {e.version}; {', '.join(e.claims)}): {e.change}", e.why)
                for i, e in self.changelog.items()]


def spec_revisions(previous: RunDocument, current: RunDocument, specs_dir: str | Path) -> list[SpecRevision]:
    """The papers whose verdicts `previous` and `current` decided under different specs, each with the
    verdicts whose rule or outcome or numbers differ and what the newer spec's changelog says about them.
    Specs are read only when a paper's hashes differ; an unreadable or missing spec is named, never raised."""
    before, after = _by_paper(previous.verdicts), _by_paper(current.verdicts)
    revised = sorted(p for p in before.keys() & after.keys() if _hash_set(before[p]) != _hash_set(after[p]))
    if not revised:
        return []
    library = _Specs(Path(specs_dir))
    runs = (previous.run_id, current.run_id)
    return [_revision(paper, before[paper], after[paper], library, runs) for paper in revised]


def _revision(paper: str, old: Sequence[Verdict], new: Sequence[Verdict], library: "_Specs",
              runs: tuple[str, str]) -> SpecRevision:
    before, after = _hash_set(old), _hash_set(new)
    found = {h: library.find(paper, h) for h in before | after}
    problems = [library.missing(paper, h, run) for hashes, run in ((before, runs[0]), (after, runs[1]))
                for h in sorted(hashes) if found[h] is None]
    known = [s for s in found.values() if s is not None]
    newer = max(known, key=lambda s: (library.is_current(s), _version(s), s.hash in after), default=None)
    earlier = {e for s in known if s is not newer for e in s.changelog}
    entries = {i: e for i, e in enumerate(newer.changelog if newer else (), 1) if e not in earlier}
    claims = tuple(_claim_revisions(old, new, entries, changelog_known=newer is not None))
    named = sorted({i for c in claims for i in c.entries})
    return SpecRevision(
        paper=paper,
        before=tuple(sorted(before)),
        after=tuple(sorted(after)),
        files={h: s.path if s else None for h, s in found.items()},
        newer=newer.path if newer else None,
        changelog={i: entries[i] for i in named},
        claims=claims,
        problems=tuple(problems),
    )


def _claim_revisions(old: Sequence[Verdict], new: Sequence[Verdict], entries: Mapping[int, ChangelogEntry],
                     changelog_known: bool) -> Iterable[ClaimRevision]:
    before, after = _by_key(old), _by_key(new)
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a is None or b is None:
            verdict, rule = (f"new: {b.outcome.value}" if a is None else f"missing (was {a.outcome.value})"), ""
        else:
            moved = bool(drifts([a], [b])[0])
            if a.outcome == b.outcome and not moved and not rule_changed(a, b):
                continue  # the same rule decided the same verdict: nothing the revision needs to explain
            verdict = (f"{a.outcome.value} -> {b.outcome.value}" if a.outcome != b.outcome
                       else f"{b.outcome.value} in both, {'other' if moved else 'the same'} numbers")
            rule = _rule(a, b)
        named = tuple(i for i, e in entries.items() if key[0] in e.claims)
        yield ClaimRevision(*key, verdict=verdict, rule=rule, entries=named, changelog_known=changelog_known)


def _rule(old: Verdict, new: Verdict) -> str:
    if old.claim_hash and new.claim_hash:
        return "its rule changed" if rule_changed(old, new) else "its rule is unchanged"
    if rule_changed(old, new):
        return "decided under another spec (no claim hash to say whether its own rule changed)"
    return "decided under the same spec"


class _Specs:
    """The specs in a specs directory and its archive/, read once, found by (paper, hash)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.by_hash: dict[tuple[str, str], PaperSpec] = {}
        self.current: set[Path] = set()
        self.unreadable: list[str] = []
        if not directory.is_dir():
            self.unreadable.append(f"the spec directory {directory} does not exist (give --specs)")
            return
        for path in sorted(directory.glob("*.toml")) + sorted((directory / ARCHIVE_DIR).glob("*.toml")):
            try:
                spec = load_spec(path)
            except SpecError as exc:
                self.unreadable.append(f"could not read {exc}")
                continue
            self.by_hash.setdefault((spec.paper, spec.hash), spec)
            if path.parent == directory:
                self.current.add(path)

    def find(self, paper: str, digest: str) -> PaperSpec | None:
        return self.by_hash.get((paper, digest))

    def is_current(self, spec: PaperSpec) -> bool:
        """A spec in the directory itself (not archived) is the newest of its paper by definition."""
        return spec.path in self.current

    def missing(self, paper: str, digest: str, run_id: str) -> str:
        text = (f"spec {short(digest)} of run {run_id}'s {paper} verdicts is neither in {self.directory} nor in "
                f"{self.directory / ARCHIVE_DIR}: the rules that decided them cannot be read (keep a replaced spec, "
                f"byte for byte, in {self.directory / ARCHIVE_DIR})")
        return "; ".join([text, *self.unreadable])


def short(digest: str) -> str:
    """"sha256:97829c99": enough to tell a paper's spec versions apart in a line."""
    return short_hash(digest, HASH_DIGITS)


def _hashes(hashes: Sequence[str]) -> str:
    return ", ".join(short(h) for h in hashes)


def _version(spec: PaperSpec) -> int:
    """The latest version a spec's changelog names; a spec without one is a first version."""
    return max((e.version for e in spec.changelog), default=1)


def _hash_set(verdicts: Iterable[Verdict]) -> set[str]:
    return {v.spec_hash for v in verdicts}


def _by_paper(verdicts: Iterable[Verdict]) -> dict[str, list[Verdict]]:
    papers: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        papers.setdefault(verdict.paper, []).append(verdict)
    return papers


def _by_key(verdicts: Iterable[Verdict]) -> dict[tuple[str, str, str], Verdict]:
    return {(v.claim_id, v.profile, base_model_name(v.model)): v for v in verdicts}
