"""Claim specs: the pre-registered rules, paper values and sample plans of a paper.

A spec is a TOML file under `fixtures/claims/`. It is validated on load (errors
name the file, the claim and the field) and hashed; the hash goes into every
verdict so a report can be tied to the exact rules it was decided by. Each claim
has a hash of its own too (its table, its ancestors' and `[experiment]`), so a
changed rule is attributable to the claim it decides. `[preregistration] inputs`
names the files and directories outside the spec that decisions depend on;
`claimkit.preregistration` locks them with the spec. A revised spec says what it changed
and why in `[[changelog]]` entries (part of the spec, so of its hash: the reasons are
fixed with the rules, before the revision's results are seen); `claimkit report --against`
shows them beside the verdicts they explain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from claimkit.toml_file import read_toml

SCHEMA_VERSION = 2
SCHEMAS = (1, 2)  # 1: rules as keyword tables (kept readable); 2: rules as declared parts (claimkit.rules.declared)


class SpecError(ValueError):
    """A claim spec is malformed; the message names file, claim and field."""


@dataclass(frozen=True)
class SamplePlan:
    """How many samples and which seeds one profile uses for one claim."""

    n: int
    seeds: tuple[int, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClaimSpec:
    id: str
    title: str
    paper: str
    scan_claim: str | None
    parent: str | None
    paper_values: Mapping[str, Any]
    rule: Mapping[str, Any]
    profiles: Mapping[str, SamplePlan]
    requires: tuple[str, ...] = ()  # manipulation checks that must pass before this claim is tested
    #: In words: what the claim's test measures on claimkit's models and where that differs from the paper.
    analog: str = ""
    hash: str = ""  # claim_hash: what decides this claim, and nothing else of the spec

    @property
    def draft(self) -> bool:
        """A claim with an empty rule (as `claimkit init` writes it) is not operationalised yet."""
        return not self.rule

    def plan(self, profile: str) -> SamplePlan:
        """The sample plan for `profile`; sub-claims inherit their parent's plan."""
        try:
            return self.profiles[profile]
        except KeyError:
            raise SpecError(
                f"claim {self.id!r} has no sample plan for profile {profile!r} "
                f"(it has: {', '.join(sorted(self.profiles)) or 'none'})"
            ) from None


@dataclass(frozen=True)
class CheckSpec:
    """A manipulation check: a positive control of a claim's preconditions (did the training take?).

    `settings` hold the check's numbers (per profile in `profiles`); which code measures
    it is the paper's (claims/<paper>/), what it requires is here, fixed before runs.
    """

    id: str
    title: str
    settings: Mapping[str, Any]
    profiles: Mapping[str, Mapping[str, Any]]

    def for_profile(self, profile: str) -> dict[str, Any]:
        """The check's settings with the profile's overrides."""
        return {**self.settings, **self.profiles.get(profile, {})}


@dataclass(frozen=True)
class ChangelogEntry:
    """One change of a spec revision and its design reason, as the revised spec states it."""

    version: int  # the spec version that made the change
    claims: tuple[str, ...]  # the claims it touches (claim ids are kept across versions)
    change: str
    why: str


@dataclass(frozen=True)
class PaperSpec:
    path: Path
    paper: str
    title: str
    arxiv_id: str | None
    scan: Path | None
    experiment: Mapping[str, Any]
    claims: Mapping[str, ClaimSpec]
    hash: str
    schema: int = 1
    checks: Mapping[str, CheckSpec] = field(default_factory=dict)
    calibration: Mapping[str, Any] = field(default_factory=dict)
    #: Inputs outside the spec that decisions depend on, as declared: paths relative to the spec file.
    preregistration_inputs: tuple[str, ...] = ()
    #: What revisions of the spec changed and why, in the file's order; a first version has none.
    changelog: tuple[ChangelogEntry, ...] = ()

    def input_path(self, declared: str) -> Path:
        """Where a declared pre-registration input is (relative to the spec's directory)."""
        return self.path.parent / declared

    def experiment_for(self, profile: str) -> dict[str, Any]:
        """Experiment settings with the profile's overrides applied."""
        base = {k: v for k, v in self.experiment.items() if k != "profiles"}
        base.update(self.experiment.get("profiles", {}).get(profile, {}))
        return base


def spec_hash(data: Mapping[str, Any]) -> str:
    """Hash of the parsed spec: formatting and comments do not change it, values do."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def claim_hash(
    raw_claims: Mapping[str, Any], claim_id: str, experiment: Mapping[str, Any],
    checks: Mapping[str, Any] | None = None,
) -> str:
    """Hash of what decides one claim: its table, its ancestors' (a sub-claim inherits its
    parent's plans and is decided on its samples), the spec's `[experiment]` table and the
    manipulation checks it requires (a check decides whether it is tested at all).
    Like `spec_hash`, it ignores formatting and comments."""
    chain = []
    seen: set[str] = set()
    current: Any = claim_id
    while isinstance(current, str) and current in raw_claims and current not in seen:
        seen.add(current)
        chain.append({"id": current, "table": raw_claims[current]})
        current = raw_claims[current].get("parent")
    payload: dict[str, Any] = {"claims": chain, "experiment": experiment}
    required = raw_claims.get(claim_id, {}).get("requires") or []
    if required and checks:
        payload["checks"] = {c: checks.get(c) for c in sorted(required)}
    return spec_hash(payload)


def load_spec(path: str | Path) -> PaperSpec:
    path = Path(path)
    data = read_toml(path, SpecError, "claim spec")
    return _parse(path, data)


def load_specs(directory: str | Path) -> dict[str, PaperSpec]:
    """Every spec in `directory`, by paper name; claim ids must be unique across them."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SpecError(f"{directory}: claim spec directory not found")
    specs: dict[str, PaperSpec] = {}
    owner: dict[str, Path] = {}
    for file in sorted(directory.glob("*.toml")):
        spec = load_spec(file)
        if spec.paper in specs:
            raise SpecError(f"{file}: paper {spec.paper!r} is already specified in {specs[spec.paper].path}")
        for claim_id in spec.claims:
            if claim_id in owner:
                raise SpecError(f"{file}: claim {claim_id!r} is already specified in {owner[claim_id]}")
            owner[claim_id] = file
        specs[spec.paper] = spec
    return specs


def find_claim(specs: Mapping[str, PaperSpec], claim_id: str) -> tuple[PaperSpec, ClaimSpec]:
    for spec in specs.values():
        if claim_id in spec.claims:
            return spec, spec.claims[claim_id]
    known = sorted(c for s in specs.values() for c in s.claims)
    raise SpecError(f"no claim spec has the id {claim_id!r} (known ids: {', '.join(known) or 'none'})")


# -- validation ---------------------------------------------------------------


def _parse(path: Path, data: Mapping[str, Any]) -> PaperSpec:
    where = str(path)
    schema = data.get("schema")
    if schema not in SCHEMAS:
        raise SpecError(f"{where}: field 'schema' must be one of {list(SCHEMAS)}, got {schema!r}")
    paper = _require(data, "paper", str, where)
    title = _require(data, "title", str, where)
    arxiv_id = _optional(data, "arxiv_id", str, where)
    scan_rel = _optional(data, "scan", str, where)
    experiment = _optional(data, "experiment", dict, where) or {}
    raw_claims = _require(data, "claims", dict, where)
    if not raw_claims:
        raise SpecError(f"{where}: field 'claims' is empty")

    claims = {cid: _parse_claim(where, paper, cid, raw, schema) for cid, raw in raw_claims.items()}
    claims = _inherit_plans(where, claims)
    raw_checks = _optional(data, "checks", dict, where) or {}
    claims = {cid: replace(c, hash=claim_hash(raw_claims, cid, experiment, raw_checks)) for cid, c in claims.items()}
    checks = _parse_checks(where, raw_checks)
    for claim in claims.values():
        unknown = [c for c in claim.requires if c not in checks]
        if unknown:
            raise SpecError(f"{where}: claim {claim.id!r}: field 'requires' names unknown check(s) {unknown} "
                            f"(checks: {sorted(checks)})")
    scan = (path.parent / scan_rel).resolve() if scan_rel else None
    return PaperSpec(
        path=path,
        paper=paper,
        title=title,
        arxiv_id=arxiv_id,
        scan=scan,
        experiment=experiment,
        claims=claims,
        hash=spec_hash(data),
        schema=schema,
        checks=checks,
        calibration=_optional(data, "calibration", dict, where) or {},
        preregistration_inputs=_preregistration_inputs(data, where),
        changelog=_changelog(data, where),
    )


def _preregistration_inputs(data: Mapping[str, Any], where: str) -> tuple[str, ...]:
    table = _optional(data, "preregistration", dict, where)
    if table is None:
        return ()
    where = f"{where}: [preregistration]"
    unknown = sorted(set(table) - {"inputs"})
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {', '.join(unknown)}; the table has only 'inputs'")
    inputs = table.get("inputs", [])
    if not isinstance(inputs, list) or not all(isinstance(i, str) and i.strip() for i in inputs):
        raise SpecError(f"{where}: field 'inputs' must be a list of paths (strings) relative to the spec file, "
                        f"got {inputs!r}")
    absolute = [i for i in inputs if Path(i).is_absolute()]
    if absolute:
        raise SpecError(f"{where}: field 'inputs' must name paths relative to the spec file, not {absolute[0]!r}: "
                        "a lock must mean the same on every checkout")
    repeated = sorted({i for i in inputs if inputs.count(i) > 1})
    if repeated:
        raise SpecError(f"{where}: field 'inputs' names {repeated[0]!r} more than once")
    return tuple(inputs)


_CHANGELOG_FIELDS = ("version", "claims", "change", "why")


def _changelog(data: Mapping[str, Any], where: str) -> tuple[ChangelogEntry, ...]:
    entries = data.get("changelog")
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise SpecError(f"{where}: field 'changelog' must be an array of tables ([[changelog]] entries), "
                        f"got {type(entries).__name__}")
    return tuple(_changelog_entry(entry, f"{where}: changelog[{i}]") for i, entry in enumerate(entries))


def _changelog_entry(entry: Any, where: str) -> ChangelogEntry:
    needs = ", ".join(_CHANGELOG_FIELDS)
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: must be a table with {needs}, got {type(entry).__name__}")
    missing = [key for key in _CHANGELOG_FIELDS if key not in entry]
    if missing:
        raise SpecError(f"{where}: field(s) {', '.join(missing)} missing; an entry needs {needs}")
    unknown = sorted(set(entry) - set(_CHANGELOG_FIELDS))
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {', '.join(unknown)}; an entry has only {needs}")
    version = entry["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SpecError(f"{where}: field 'version' must be a positive integer (the spec version that made the "
                        f"change), got {version!r}")
    claims = entry["claims"]
    if not isinstance(claims, list) or not claims or not all(isinstance(c, str) and c.strip() for c in claims):
        raise SpecError(f"{where}: field 'claims' must be a non-empty list of the claim ids it touches, got {claims!r}")
    for key in ("change", "why"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise SpecError(f"{where}: field '{key}' must be a non-empty string, got {entry[key]!r}")
    return ChangelogEntry(version, tuple(claims), entry["change"].strip(), entry["why"].strip())


def _parse_checks(file: str, raw: Mapping[str, Any]) -> dict[str, CheckSpec]:
    checks = {}
    for cid, table in raw.items():
        where = f"{file}: check {cid!r}"
        if not isinstance(table, dict):
            raise SpecError(f"{where}: must be a table")
        profiles = _optional(table, "profiles", dict, where) or {}
        settings = {k: v for k, v in table.items() if k not in ("title", "profiles")}
        checks[cid] = CheckSpec(cid, _require(table, "title", str, where), settings, profiles)
    return checks


def _parse_claim(file: str, paper: str, cid: str, raw: Any, schema: int = 1) -> ClaimSpec:
    where = f"{file}: claim {cid!r}"
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: must be a table, got {type(raw).__name__}")
    parent = _optional(raw, "parent", str, where)
    scan_claim = _optional(raw, "scan_claim", str, where)
    if parent is None and not scan_claim:
        raise SpecError(f"{where}: field 'scan_claim' is required for a top-level claim (or set 'parent')")
    paper_values = _optional(raw, "paper_values", dict, where) or {}
    rule = _require(raw, "rule", dict, where)
    if not rule:  # a draft: nothing to validate until its rule is written
        return ClaimSpec(id=cid, title=_require(raw, "title", str, where), paper=paper, scan_claim=scan_claim,
                         parent=parent, paper_values=paper_values, rule=rule, profiles={})
    alpha = rule.get("alpha")
    if not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise SpecError(f"{where}: field 'rule.alpha' must be a number in (0, 1), got {alpha!r}")
    if schema >= 2:
        from claimkit.rules.declaration import RuleError, check_parts

        try:
            check_parts(rule, where)
        except RuleError as exc:
            raise SpecError(str(exc)) from None
    for key in ("equivalence_margin", "threshold", "min_confidence", "min_accuracy", "caft_max_rate"):
        value = rule.get(key)
        if value is not None and (not isinstance(value, (int, float)) or not 0 <= value <= 1):
            raise SpecError(f"{where}: field 'rule.{key}' must be a number in [0, 1], got {value!r}")
    profiles_raw = _optional(raw, "profiles", dict, where) or {}
    profiles = {name: _parse_plan(f"{where}: profile {name!r}", plan) for name, plan in profiles_raw.items()}
    requires = _optional(raw, "requires", list, where) or []
    if not all(isinstance(c, str) for c in requires):
        raise SpecError(f"{where}: field 'requires' must be a list of check ids, got {requires!r}")
    return ClaimSpec(
        id=cid,
        title=_require(raw, "title", str, where),
        paper=paper,
        scan_claim=scan_claim,
        parent=parent,
        paper_values=paper_values,
        rule=rule,
        profiles=profiles,
        requires=tuple(requires),
        analog=_optional(raw, "analog", str, where) or "",
    )


def _parse_plan(where: str, raw: Any) -> SamplePlan:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: must be a table with 'n' and 'seeds'")
    n = raw.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SpecError(f"{where}: field 'n' must be a positive integer, got {n!r}")
    seeds = raw.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise SpecError(f"{where}: field 'seeds' must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"{where}: field 'seeds' repeats a seed: {seeds!r}")
    extra = {k: v for k, v in raw.items() if k not in ("n", "seeds")}
    return SamplePlan(n=n, seeds=tuple(seeds), extra=extra)


def _inherit_plans(file: str, claims: dict[str, ClaimSpec]) -> dict[str, ClaimSpec]:
    """Sub-claims are decided on their parent's samples, so they share its plans."""
    out = {}
    for cid, claim in claims.items():
        if claim.parent is not None:
            if claim.parent not in claims:
                raise SpecError(f"{file}: claim {cid!r}: field 'parent' names unknown claim {claim.parent!r}")
            if not claim.profiles:
                parent = claims[claim.parent]
                claim = replace(claim, profiles=parent.profiles)
        out[cid] = claim
    return out


def _require(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise SpecError(f"{where}: field {key!r} is missing")
    return _optional(data, key, kind, where)


def _optional(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if value is not None and not isinstance(value, kind):
        raise SpecError(f"{where}: field {key!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value
