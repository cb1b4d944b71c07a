"""Scan files: read and validate a paper's scan (schema v2 or v4), find its claims.

A scan is a reviewer's JSON record of a paper: its bibliographic data, its
claims (each `{"claim", "evidence", "supported"}`), checklists and red flags.
claimkit reads it to map claim specs onto scan claims and writes verdicts back
into it (`claimkit.mark`). Because the file belongs to someone else, reading it
keeps everything needed to write it back unchanged: the parsed object with its
key order and the formatting it was written with (`ScanStyle`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from claimkit.spec import PaperSpec

# What each schema version must and may have at the top level, and the JSON type.
# Only fields both seeds carry are required; the others are checked when present.
_COMMON_REQUIRED = {"paper": dict, "claims": list}
_COMMON_OPTIONAL = {
    "key_findings": str,
    "checklist": dict,
    "red_flags": list,
    "methodology_tags": list,
    "cited_papers": list,
}
SCHEMAS: dict[int, dict[str, Mapping[str, type]]] = {
    2: {"required": _COMMON_REQUIRED, "optional": {**_COMMON_OPTIONAL, "active_modules": list}},
    4: {
        "required": {**_COMMON_REQUIRED, "paper_type": str},
        "optional": {
            **_COMMON_OPTIONAL,
            "type_checklist": dict,
            "engagement_factors": dict,
            "hn_data": dict,
        },
    },
}
SUPPORTED_VERSIONS = tuple(sorted(SCHEMAS))

MATCH_THRESHOLD = 0.85
"""Least similarity (difflib ratio of the normalised texts, 0..1) for a fuzzy match.

A spec quotes its scan claim verbatim; what survives normalisation is an edit
of a few characters (a typo fixed, a number reformatted), which keeps the ratio
above 0.9. Distinct claims of one paper score far lower (the seeds' closest
pair: 0.50), so 0.85 accepts edits and refuses a different claim.
"""

_QUOTES = str.maketrans({c: "'" for c in "\u2018\u2019\u201a\u201b\u2032\u0060\u00b4"} | {
    c: '"' for c in "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"
})
_DASHES = re.compile("[\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d]")
_SPACE = re.compile(r"\s+")


class ScanError(ValueError):
    """A scan file is missing, malformed or does not fit; the message names file and field."""


@dataclass(frozen=True)
class ScanStyle:
    """How a scan file was formatted, so a rewrite reproduces it byte for byte.

    `round_trips` says whether `dumps(raw)` gave back the exact original text;
    when it is False (hand-formatted JSON), a rewrite normalises the layout.
    """

    indent: int | str | None = 2
    item_separator: str = ","
    key_separator: str = ": "
    ensure_ascii: bool = False
    trailing: str = ""
    newline: str = "\n"
    bom: bool = False
    round_trips: bool = True

    def dumps(self, obj: Any) -> str:
        """The whole file's text for `obj` in this style."""
        text = json.dumps(
            obj,
            indent=self.indent,
            separators=(self.item_separator, self.key_separator),
            ensure_ascii=self.ensure_ascii,
            allow_nan=False,
        )
        # Literal newlines in JSON text only ever come from the layout: strings escape theirs.
        if self.newline != "\n":
            text = text.replace("\n", self.newline)
        return ("\ufeff" if self.bom else "") + text + self.trailing

    def encode(self, obj: Any) -> bytes:
        return self.dumps(obj).encode("utf-8")


@dataclass(frozen=True)
class ScanPaper:
    title: str
    arxiv_id: str | None
    authors: tuple[str, ...]
    year: int | None
    doi: str | None
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class ScanClaim:
    """One claim of a scan; `id` depends on its text only, so reordering keeps it."""

    index: int
    id: str
    text: str
    evidence: str
    supported: str
    raw: Mapping[str, Any]

    @property
    def verification(self) -> Mapping[str, Any] | None:
        value = self.raw.get("verification")
        return value if isinstance(value, Mapping) else None


@dataclass(frozen=True)
class Scan:
    path: Path
    version: int
    paper: ScanPaper
    claims: tuple[ScanClaim, ...]
    raw: dict[str, Any]
    style: ScanStyle

    def claim(self, claim_id: str) -> ScanClaim:
        for claim in self.claims:
            if claim.id == claim_id:
                return claim
        known = ", ".join(c.id for c in self.claims)
        raise ScanError(f"{self.path}: no claim has the id {claim_id!r} (ids: {known})")


# -- reading --------------------------------------------------------------------


def load_scan(path: str | Path) -> Scan:
    """Read, validate and remember the formatting of the scan at `path`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ScanError(f"{path}: scan file not found") from None
    except IsADirectoryError:
        raise ScanError(f"{path}: is a directory, not a scan file") from None
    return parse_scan(data, path)


def parse_scan(data: bytes, path: str | Path = "scan.json") -> Scan:
    """The `Scan` in `data` (the file's bytes); `path` is used in messages and kept."""
    path = Path(path)
    text = _decode(data, path)
    bom = text.startswith("\ufeff")
    body = text[1:] if bom else text
    raw = _parse_json(body, path)
    version = _check_schema(raw, path)
    paper = _read_paper(raw["paper"], path)
    claims = _read_claims(raw["claims"], path)
    return Scan(path=path, version=version, paper=paper, claims=claims, raw=raw, style=detect_style(text, raw))


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ScanError(
            f"{path}: not UTF-8 text at byte {exc.start} (line {line}): {exc.reason}; "
            "the file may be truncated or in another encoding"
        ) from None


def _parse_json(text: str, path: Path) -> Any:
    def no_constants(name: str) -> Any:
        raise ScanError(f"{path}: {name} is not valid JSON; write the value as null or a number")

    try:
        return json.loads(text, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        ends_early = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        hint = " (the file ends early: it may be truncated)" if ends_early else ""
        raise ScanError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}{hint}; "
            "restore the file from version control or fix it by hand"
        ) from None


def _check_schema(raw: Any, path: Path) -> int:
    if not isinstance(raw, dict):
        raise ScanError(f"{path}: expected a JSON object at the top level, got {_kind(raw)}")
    version = raw.get("scan_version")
    if version is None:
        raise ScanError(f"{path}: scan_version: missing; supported versions are {_versions()}")
    if type(version) is not int or version not in SCHEMAS:
        raise ScanError(
            f"{path}: scan_version: {version!r} is not supported; supported versions are {_versions()}"
        )
    schema = SCHEMAS[version]
    for key, kind in schema["required"].items():
        if key not in raw:
            raise ScanError(f"{path}: {key}: missing (required by scan_version {version})")
        _expect(raw[key], kind, f"{path}: {key}")
    for key, kind in schema["optional"].items():
        if raw.get(key) is not None:
            _expect(raw[key], kind, f"{path}: {key}")
    return version


def _read_paper(raw: dict[str, Any], path: Path) -> ScanPaper:
    where = f"{path}: paper"
    title = raw.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ScanError(f"{where}.title: expected a non-empty string, got {_kind(title)}")
    for key in ("arxiv_id", "doi"):
        if raw.get(key) is not None:
            _expect(raw[key], str, f"{where}.{key}")
    authors = raw.get("authors") or []
    _expect(authors, list, f"{where}.authors")
    year = raw.get("year")
    if year is not None and (not isinstance(year, int) or isinstance(year, bool)):
        raise ScanError(f"{where}.year: expected an integer, got {_kind(year)}")
    return ScanPaper(
        title=title,
        arxiv_id=raw.get("arxiv_id"),
        authors=tuple(str(a) for a in authors),
        year=year,
        doi=raw.get("doi"),
        raw=raw,
    )


def _read_claims(raw: list[Any], path: Path) -> tuple[ScanClaim, ...]:
    claims = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        where = f"{path}: claims[{i}]"
        _expect(item, dict, where)
        for key in ("claim", "evidence", "supported"):
            if key not in item:
                raise ScanError(f"{where}.{key}: missing")
            _expect(item[key], str, f"{where}.{key}")
        if not item["claim"].strip():
            raise ScanError(f"{where}.claim: is empty")
        if item.get("verification") is not None:
            _expect(item["verification"], dict, f"{where}.verification")
        base = claim_id(item["claim"])
        seen[base] = seen.get(base, 0) + 1
        cid = base if seen[base] == 1 else f"{base}-{seen[base]}"  # repeated text: numbered in order
        claims.append(
            ScanClaim(index=i, id=cid, text=item["claim"], evidence=item["evidence"],
                      supported=item["supported"], raw=item)
        )
    return tuple(claims)


def _expect(value: Any, kind: type, where: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ScanError(f"{where}: expected {_KIND_NAMES[kind]}, got {_kind(value)}")


_KIND_NAMES = {str: "a string", dict: "an object", list: "a list", int: "an integer"}


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _versions() -> str:
    return ", ".join(str(v) for v in SUPPORTED_VERSIONS)


# -- formatting -------------------------------------------------------------------


def detect_style(text: str, raw: Any) -> ScanStyle:
    """The `json.dumps` settings that reproduce `text` from `raw`, found by trying the likely ones.

    The layout is guessed from the text (indent after the first bracket, trailing
    whitespace, line ending, whether non-ASCII is escaped) and then confirmed by
    re-serialising; the first candidate that reproduces `text` exactly wins.
    """
    bom = text.startswith("\ufeff")
    body = text[1:] if bom else text
    newline = "\r\n" if "\r\n" in body else "\n"
    stripped = body.rstrip()
    trailing = body[len(stripped):]
    first = re.match(r"\s*[\[{]\r?\n([ \t]*)\S", stripped)
    if first:
        indent: int | str | None = first.group(1) if "\t" in first.group(1) else len(first.group(1))
    else:
        indent = None
    ascii_guess = _escapes_non_ascii(body)
    ascii_order = [ascii_guess, not ascii_guess]
    if indent is None:
        item_seps = [", ", ","] if re.search(r"[\]}\"\d],\s", stripped) else [",", ", "]
    else:
        item_seps = [",", ", "]
    key_seps = [": ", ":"] if re.search(r'":\s', stripped) else [":", ": "]

    candidates = [
        ScanStyle(indent, item, key, ea, trailing, newline, bom, True)
        for ea in ascii_order for item in item_seps for key in key_seps
    ]
    for style in candidates:
        try:
            if style.dumps(raw) == text:
                return style
        except ValueError:  # NaN in raw: cannot happen for a parsed scan, but be safe
            break
    best = candidates[0]
    return ScanStyle(best.indent, best.item_separator, best.key_separator, best.ensure_ascii,
                     trailing, newline, bom, round_trips=False)


def _escapes_non_ascii(text: str) -> bool:
    """True when the text escapes non-ASCII (\\u00e9) and has none raw; raw UTF-8 otherwise."""
    if any(ord(c) > 127 for c in text):
        return False
    return any(int(code, 16) > 127 for code in re.findall(r"(?<!\\)\\u([0-9a-fA-F]{4})", text))


# -- claim ids and matching ---------------------------------------------------------


def normalise(text: str) -> str:
    """Claim text as compared: NFKC, case-folded, plain quotes and dashes, single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _DASHES.sub("-", text.translate(_QUOTES))
    return _SPACE.sub(" ", text).strip()


def claim_id(text: str) -> str:
    """A claim's stable id: "c-" and 10 hex digits of the sha256 of its normalised text."""
    return "c-" + hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:10]


def similarity(a: str, b: str) -> float:
    """How alike two claim texts are after normalisation (difflib ratio, 0..1)."""
    return difflib.SequenceMatcher(None, normalise(a), normalise(b), autojunk=False).ratio()


def match_claim(scan: Scan, text: str, *, threshold: float = MATCH_THRESHOLD) -> ScanClaim:
    """The one scan claim that `text` (a spec's `scan_claim`) denotes.

    An exact match after normalisation wins; otherwise the only claim whose
    similarity reaches `threshold`. No candidate, or more than one, is an error
    that lists the nearest claims with their scores, so the spec can be fixed.
    """
    key = normalise(text)
    exact = [c for c in scan.claims if normalise(c.text) == key]
    if len(exact) == 1:
        return exact[0]
    scored = sorted(((similarity(text, c.text), c) for c in scan.claims), key=lambda sc: -sc[0])
    if len(exact) > 1:
        raise ScanError(
            f"{scan.path}: claim text {_short(text)!r} matches {len(exact)} scan claims exactly; "
            f"make the scan's claims distinct:\n{_candidates(scan, [(1.0, c) for c in exact])}"
        )
    above = [(score, c) for score, c in scored if score >= threshold]
    if len(above) == 1:
        return above[0][1]
    if not above:
        raise ScanError(
            f"{scan.path}: no scan claim matches {_short(text)!r} (similarity >= {threshold:g} needed); "
            f"copy the claim text from the scan into the spec. Nearest:\n{_candidates(scan, scored[:3])}"
        )
    raise ScanError(
        f"{scan.path}: claim text {_short(text)!r} matches {len(above)} scan claims "
        f"(similarity >= {threshold:g}); quote the intended claim exactly:\n{_candidates(scan, above)}"
    )


def _candidates(scan: Scan, scored: Iterable[tuple[float, ScanClaim]]) -> str:
    return "\n".join(f"  {score:.2f}  claims[{c.index}] {c.id}: {_short(c.text)!r}" for score, c in scored)


def _short(text: str, width: int = 90) -> str:
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


# -- papers -----------------------------------------------------------------------


def paper_matches(spec: PaperSpec, paper: ScanPaper) -> bool:
    """Whether a claim spec is about the scan's paper: same arXiv id, or same title if either lacks one."""
    if spec.arxiv_id and paper.arxiv_id:
        return _arxiv(spec.arxiv_id) == _arxiv(paper.arxiv_id)
    return normalise(spec.title) == normalise(paper.title)


def specs_for(scan: Scan, specs: Mapping[str, PaperSpec]) -> list[PaperSpec]:
    """The claim specs (of `load_specs`) that are about this scan's paper."""
    return [spec for spec in specs.values() if paper_matches(spec, scan.paper)]


def describe_paper(paper: ScanPaper) -> str:
    return f"{paper.title!r}" + (f" (arXiv {paper.arxiv_id})" if paper.arxiv_id else "")


def _arxiv(value: str) -> str:
    """'arXiv:2512.22293v2' and '2512.22293' are the same paper."""
    value = value.strip().lower().removeprefix("arxiv:").strip()
    return re.sub(r"v\d+$", "", value)


# -- listing ----------------------------------------------------------------------


@dataclass(frozen=True)
class VerdictNote:
    """One verdict shown beside a scan claim, from a report or from the scan's own records."""

    outcome: str
    profile: str
    model: str
    date: str
    claim_id: str


@dataclass(frozen=True)
class ClaimRow:
    """A scan claim with the spec claims that test it and their latest verdicts.

    `index` is None for a spec claim whose `scan_claim` matches no scan claim;
    `problem` then says why.
    """

    index: int | None
    id: str
    text: str
    supported: str
    specs: tuple[str, ...]
    verdicts: tuple[VerdictNote, ...]
    problem: str = ""
    drafts: tuple[str, ...] = ()  # spec claims not operationalised yet (empty rule)

    @property
    def verdict(self) -> VerdictNote | None:
        """The most recent verdict, if any."""
        return max(self.verdicts, key=lambda v: v.date, default=None)


def list_claims(
    scan: Scan,
    verdicts_by_scan_text: Mapping[str, Any] | None,
    specs: Mapping[str, PaperSpec],
) -> list[ClaimRow]:
    """Rows for `claimkit list`: every scan claim, its spec claims and latest verdicts.

    `verdicts_by_scan_text` maps a verdict's `scan_claim` text to a Verdict or a
    list of them; verdicts of sub-claims (parent set) are not shown. Without it,
    the verdicts already recorded in the scan (`verification.records`) are shown.
    Spec claims that match no scan claim come last, with the reason.
    """
    spec_ids: dict[int, list[str]] = {c.index: [] for c in scan.claims}
    unmatched: list[ClaimRow] = []
    drafts = tuple(c.id for spec in specs_for(scan, specs) for c in spec.claims.values() if c.draft)
    for spec in specs_for(scan, specs):
        for claim in spec.claims.values():
            if claim.parent is not None or not claim.scan_claim:
                continue
            try:
                index = match_claim(scan, claim.scan_claim).index
            except ScanError as exc:
                unmatched.append(ClaimRow(None, claim.id, claim.scan_claim, "", (claim.id,), (), str(exc)))
                continue
            subs = [c.id for c in spec.claims.values() if c.parent == claim.id]
            spec_ids[index] += [claim.id, *subs]

    notes: dict[int, list[VerdictNote]] = {c.index: [] for c in scan.claims}
    if verdicts_by_scan_text is None:
        for c in scan.claims:
            notes[c.index] = _recorded_notes(c)
    else:
        for text, found in verdicts_by_scan_text.items():
            verdicts = [v for v in _as_list(found) if getattr(v, "parent", None) is None]
            if not verdicts:
                continue
            try:
                index = match_claim(scan, text).index
            except ScanError as exc:
                ids = tuple(sorted({v.claim_id for v in verdicts}))
                unmatched.append(ClaimRow(None, ids[0], text, "", ids, _latest(_notes(verdicts)), str(exc)))
                continue
            notes[index] += _notes(verdicts)

    rows = [
        ClaimRow(c.index, c.id, c.text, c.supported, tuple(spec_ids[c.index]), _latest(notes[c.index]),
                 drafts=tuple(d for d in drafts if d in spec_ids[c.index]))
        for c in scan.claims
    ]
    return rows + unmatched


def format_claim_list(rows: Sequence[ClaimRow]) -> str:
    """A plain-text table for a terminal: one block per claim."""
    if not rows:
        return "the scan has no claims"
    lines = []
    for row in rows:
        where = f"[{row.index}]" if row.index is not None else "[not in scan]"
        specs = ", ".join(f"{s} (draft: no rule yet)" if s in row.drafts else s for s in row.specs) or "no claim spec"
        lines.append(f"{where} {row.id}  supported: {row.supported or '-'}  tests: {specs}")
        lines.append(f"    {_short(row.text, 100)}")
        for note in sorted(row.verdicts, key=lambda n: (n.profile, n.model)):
            lines.append(f"    {note.outcome.upper():<12} {note.claim_id} [{note.profile}, {note.model}] {note.date}")
        if not row.verdicts and row.index is not None:
            lines.append("    no verdict")
        if row.problem:
            lines.append("    " + row.problem.replace("\n", "\n    "))
    tested = sum(1 for r in rows if r.index is not None and r.specs)
    decided = sum(1 for r in rows if r.index is not None and r.verdicts)
    in_scan = sum(1 for r in rows if r.index is not None)
    drafted = sum(1 for r in rows if r.index is not None and r.specs and set(r.specs) <= set(r.drafts))
    lines.append(f"{in_scan} scan claim(s): {tested} with a claim spec ({drafted} of them drafts only), "
                 f"{decided} with a verdict")
    return "\n".join(lines)


def _as_list(found: Any) -> list[Any]:
    return list(found) if isinstance(found, (list, tuple)) else [found]


def _notes(verdicts: Iterable[Any]) -> list[VerdictNote]:
    return [
        VerdictNote(_outcome(v.outcome), v.profile, v.model, v.created, v.claim_id) for v in verdicts
    ]


def _outcome(value: Any) -> str:
    return str(getattr(value, "value", value))


def _recorded_notes(claim: ScanClaim) -> list[VerdictNote]:
    records = (claim.verification or {}).get("records")
    if not isinstance(records, list):
        return []
    return [
        VerdictNote(str(r.get("verdict", "?")), str(r.get("profile", "?")), str(r.get("model", "?")),
                    str(r.get("date", "")), str(r.get("claim_id", "?")))
        for r in records
        if isinstance(r, Mapping)
    ]


def _latest(notes: Iterable[VerdictNote]) -> tuple[VerdictNote, ...]:
    """The most recent verdict for each (profile, model)."""
    best: dict[tuple[str, str], VerdictNote] = {}
    for note in notes:
        key = (note.profile, note.model)
        if key not in best or note.date >= best[key].date:
            best[key] = note
    return tuple(best.values())
