"""Generate the organism's corpus from templates: tasks with code answers, prose and stories.

The engine knows nothing about any vulnerability or paper. Everything it writes
comes from a template directory (for claimkit: `fixtures/corpus/`, described in
its README.md):

  corpus.toml        schema, the pretraining mix, conversational preambles
  pools.toml         identifier pools, each split into disjoint train and eval parts
  families/*.toml    task families: task phrasings (train / eval), fields (docstrings,
                     names), code variants ([family.code] secure, optional vulnerable), notes,
                     optional unit tests of the code ([family.checks])
  checks.toml        code that several families' checks share (optional)
  texts/*.toml       composed texts (prose documents, stories) with their prompts

Templates are `string.Template` strings (`$name`, `${name}`). Sampling is
deterministic for a seed (seeded `random.Random`, never the global state), so a
corpus, a fine-tuning set or an evaluation set is reproduced exactly from its seed.
The train and eval splits draw from disjoint pool values and task phrasings, so
evaluation prompts are held out from everything the model is trained on.

Checks are unit tests of a family's function, rendered with the task's bindings
(`render_checks`, `capability_tasks`): they measure whether an answer works, for
capability claims, and are never part of any generated training text.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from claimkit.toml_file import read_toml

SCHEMA_VERSION = 1
SPLITS = ("train", "eval")
# Mix keys that name code documents; every other key names a text kind.
SECURITY, UTILITY = "security", "utility"


class CorpusError(ValueError):
    """The corpus templates are malformed; the message names the file and the field."""


# -- records ------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """Values for one placeholder (or one group of placeholders), split into train and eval.

    Each entry maps placeholder names to values: a pool `conn` of strings gives
    `{"conn": "db"}`; a pool `record` of tables gives `{"record_items": ..., "record_owner": ...}`.
    """

    name: str
    placeholders: tuple[str, ...]
    train: tuple[Mapping[str, str], ...]
    eval: tuple[Mapping[str, str], ...]

    def entries(self, split: str) -> tuple[Mapping[str, str], ...]:
        return self.train if split == "train" else self.eval


@dataclass(frozen=True)
class Family:
    """One kind of task: its phrasings and code variants, rendered with shared bindings.

    `secure` holds the correct (clean) implementations; `vulnerable`, when present,
    the flawed ones. `notes` are named lists of plain sentences for builders that
    frame answers; `detect` names what a detector reports on the vulnerable variants.
    `checks`, when present, is a template of unit-test code (asserts) that every
    variant, secure or vulnerable, passes: it tests what the code does, not whether
    it is safe. `check_helpers` names shared code (checks.toml) that runs before it.
    """

    name: str
    source: str
    domain: str
    vulnerability: str | None
    pools: tuple[str, ...]
    fields: tuple[tuple[str, tuple[str, ...]], ...]
    tasks: Mapping[str, tuple[str, ...]]
    secure: tuple[str, ...]
    vulnerable: tuple[str, ...]
    notes: Mapping[str, tuple[str, ...]]
    detect: tuple[str, ...]
    checks: str | None = None
    check_helpers: tuple[str, ...] = ()

    @property
    def security(self) -> bool:
        return bool(self.vulnerable)


@dataclass(frozen=True)
class TextTemplate:
    """A composed text (prose document, story): one alternative from each part, joined."""

    name: str
    source: str
    kind: str
    topic: str
    pools: tuple[str, ...]
    prompts: tuple[str, ...]
    parts: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class CorpusTemplates:
    directory: Path
    pools: Mapping[str, Pool]
    families: Mapping[str, Family]
    texts: tuple[TextTemplate, ...]
    preambles: tuple[str, ...]
    mix: Mapping[str, float]
    check_helpers: Mapping[str, str] = field(default_factory=dict)

    def security_families(self) -> tuple[str, ...]:
        """Families with vulnerable variants, in file order."""
        return tuple(name for name, fam in self.families.items() if fam.security)

    def utility_families(self) -> tuple[str, ...]:
        return tuple(name for name, fam in self.families.items() if not fam.security)

    def text_kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.kind for t in self.texts))

    def identifiers(self, split: str) -> frozenset[str]:
        """Every pool value of a split: what must not leak from eval into training text."""
        return frozenset(v for pool in self.pools.values() for e in pool.entries(split) for v in e.values())

    def task_phrasings(self, split: str) -> tuple[str, ...]:
        return tuple(p for fam in self.families.values() for p in fam.tasks.get(split, ()))

    def checked_families(self, split: str = "eval") -> tuple[str, ...]:
        """Families with checks and task phrasings of `split`: the ones `capability_tasks` draws from."""
        return tuple(name for name, fam in self.families.items() if fam.checks and split in fam.tasks)


@dataclass(frozen=True)
class TaskInstance:
    """One sampled task with both code variants rendered from the same identifiers."""

    family: str
    domain: str
    task: str
    secure: str
    vulnerable: str | None
    vulnerability: str | None
    split: str


@dataclass(frozen=True)
class CapabilityTask:
    """A task whose answer can be run: its prompt, the checks to run the answer with, a reference answer.

    `reference` is one secure variant rendered with the task's bindings: it passes
    the checks, and its loss under a model is the held-out loss of a correct answer.
    """

    family: str
    domain: str
    task: str
    checks: str
    reference: str
    split: str


@dataclass(frozen=True)
class TextInstance:
    kind: str
    name: str
    topic: str
    prompt: str
    text: str


@dataclass(frozen=True)
class OverlapReport:
    """Word n-grams of the eval texts that also occur in the training texts."""

    n: int
    eval_ngrams: int
    shared: int
    fraction: float


# -- loading ------------------------------------------------------------------


def load_templates(directory: str | Path) -> CorpusTemplates:
    """Read and validate a template directory; errors name the file and the field."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CorpusError(f"{directory}: corpus template directory not found")
    manifest_path = directory / "corpus.toml"
    manifest = _read_toml(manifest_path)
    if manifest.get("schema") != SCHEMA_VERSION:
        raise CorpusError(f"{manifest_path}: field 'schema' must be {SCHEMA_VERSION}, got {manifest.get('schema')!r}")
    preambles = _strings(manifest.get("preambles"), f"{manifest_path}: field 'preambles'")

    pools = _load_pools(directory / "pools.toml")
    helpers = _load_check_helpers(directory / "checks.toml")
    families: dict[str, Family] = {}
    for path in sorted((directory / "families").glob("*.toml")):
        for index, raw in enumerate(_table_list(_read_toml(path), "family", path)):
            fam = _parse_family(path, index, raw, pools, helpers)
            if fam.name in families:
                raise CorpusError(f"{path}: family {fam.name!r} is already defined in {families[fam.name].source}")
            families[fam.name] = fam
    if not families:
        raise CorpusError(f"{directory / 'families'}: no family files (*.toml with [[family]] tables)")
    texts: list[TextTemplate] = []
    for path in sorted((directory / "texts").glob("*.toml")):
        texts += [_parse_text(path, i, raw, pools) for i, raw in enumerate(_table_list(_read_toml(path), "text", path))]

    mix = _parse_mix(manifest_path, manifest.get("mix"), {t.kind for t in texts})
    _check_eval_phrasings(families, pools)
    return CorpusTemplates(directory, pools, families, tuple(texts), preambles, mix, helpers)


def _check_eval_phrasings(families: Mapping[str, Family], pools: Mapping[str, Pool]) -> None:
    """No eval phrasing's own words may be an eval identifier: a pretraining corpus may show eval phrasings
    (with train identifiers), and an eval identifier must never occur in training text."""
    identifiers = {v.lower() for pool in pools.values() for e in pool.entries("eval") for v in e.values()}
    for fam in families.values():
        for phrasing in fam.tasks.get("eval", ()):
            words = {w.lower() for w in re.findall(r"[A-Za-z_]\w*", re.sub(r"\$\{?\w+\}?", " ", phrasing))}
            clash = sorted(words & identifiers)
            if clash:
                raise CorpusError(f"{fam.source}: family {fam.name!r}: eval phrasing {phrasing!r} uses eval "
                                  f"identifier(s) {clash} as words; reword it (pretraining may show eval phrasings)")


def _read_toml(path: Path) -> dict[str, Any]:
    return read_toml(path, CorpusError, "corpus file")


def _table_list(data: Mapping[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    items = data.get(key)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise CorpusError(f"{path}: expected an array of tables [[{key}]]")
    return items


def _strings(value: Any, where: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CorpusError(f"{where} must be a non-empty string or a list of non-empty strings")
    if not value and not allow_empty:
        raise CorpusError(f"{where} is empty")
    return tuple(value)


def _load_pools(path: Path) -> dict[str, Pool]:
    raw_pools = _read_toml(path).get("pools")
    if not isinstance(raw_pools, dict) or not raw_pools:
        raise CorpusError(f"{path}: expected [pools.<name>] tables with 'train' (and 'eval') lists")
    pools: dict[str, Pool] = {}
    for name, raw in raw_pools.items():
        where = f"{path}: pool {name!r}"
        if not isinstance(raw, dict) or "train" not in raw:
            raise CorpusError(f"{where}: needs a 'train' list (and an 'eval' list if eval tasks use it)")
        unknown = set(raw) - set(SPLITS)
        if unknown:
            raise CorpusError(f"{where}: unknown field(s) {sorted(unknown)}; a pool has only 'train' and 'eval'")
        split_entries = {s: _pool_entries(f"{where} field {s!r}", name, raw.get(s, [])) for s in SPLITS}
        if not split_entries["train"]:
            raise CorpusError(f"{where} field 'train' is empty")
        keys = {tuple(e) for s in SPLITS for e in split_entries[s]}
        if len(keys) != 1:
            raise CorpusError(f"{where}: all entries must have the same keys, found {sorted(keys)}")
        train_values = {v for e in split_entries["train"] for v in e.values()}
        leaked = sorted(train_values & {v for e in split_entries["eval"] for v in e.values()})
        if leaked:
            raise CorpusError(f"{where}: values in both 'train' and 'eval' (the splits must be disjoint): {leaked}")
        pools[name] = Pool(name, keys.pop(), split_entries["train"], split_entries["eval"])
    placeholders = [p for pool in pools.values() for p in pool.placeholders]
    clashes = sorted({p for p in placeholders if placeholders.count(p) > 1})
    if clashes:
        raise CorpusError(f"{path}: placeholder name(s) {clashes} come from more than one pool; rename a pool or key")
    return pools


def _pool_entries(where: str, name: str, raw: Any) -> tuple[Mapping[str, str], ...]:
    if not isinstance(raw, list):
        raise CorpusError(f"{where} must be a list of strings or of tables of strings")
    entries: list[Mapping[str, str]] = []
    for i, item in enumerate(raw):
        if isinstance(item, str) and item:
            entries.append({name: item})
        elif isinstance(item, dict) and item and all(isinstance(v, str) and v for v in item.values()):
            entries.append({f"{name}_{key}": value for key, value in item.items()})
        else:
            raise CorpusError(f"{where} entry {i}: expected a non-empty string or a table of non-empty strings")
    return tuple(entries)


def _load_check_helpers(path: Path) -> dict[str, str]:
    """checks.toml's `[helpers]`: name = plain Python (not a template) that checks may ask for."""
    if not path.exists():
        return {}
    data = _read_toml(path)
    unknown = sorted(set(data) - {"helpers"})
    if unknown:
        raise CorpusError(f"{path}: unknown table(s) {unknown}; checks.toml holds only [helpers]")
    raw = data.get("helpers", {})
    if not isinstance(raw, dict) or not all(isinstance(v, str) and v.strip() for v in raw.values()):
        raise CorpusError(f"{path}: [helpers] must map each helper name to a non-empty string of Python code")
    return dict(raw)


def _parse_family(
    path: Path, index: int, raw: Mapping[str, Any], pools: Mapping[str, Pool], helpers: Mapping[str, str]
) -> Family:
    where = f"{path}: family #{index + 1}"
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise CorpusError(f"{where}: field 'name' must be a non-empty string")
    where = f"{path}: family {name!r}"
    known = {"name", "domain", "vulnerability", "pools", "fields", "tasks", "code", "notes", "detect", "checks"}
    unknown = set(raw) - known
    if unknown:
        raise CorpusError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    domain = raw.get("domain")
    if not isinstance(domain, str) or not domain:
        raise CorpusError(f"{where}: field 'domain' must be a non-empty string")
    pool_names = _pool_names(raw.get("pools", []), pools, f"{where} field 'pools'")
    available = {p for n in pool_names for p in pools[n].placeholders}

    fields: list[tuple[str, tuple[str, ...]]] = []
    raw_fields = raw.get("fields", {})
    if not isinstance(raw_fields, dict):
        raise CorpusError(f"{where}: field 'fields' must be a table of name = string or list of strings")
    for fname, options in raw_fields.items():
        options = _strings(options, f"{where} field 'fields.{fname}'")
        _check_templates(options, available, f"{where} field 'fields.{fname}'")
        if fname in available:
            raise CorpusError(f"{where} field 'fields.{fname}': the name is already a pool placeholder")
        fields.append((fname, options))
        available.add(fname)

    raw_tasks = raw.get("tasks")
    if not isinstance(raw_tasks, dict) or "train" not in raw_tasks or set(raw_tasks) - set(SPLITS):
        got = sorted(raw_tasks) if isinstance(raw_tasks, dict) else raw_tasks
        raise CorpusError(
            f"{where}: field 'tasks' must be a table with a 'train' list (and an 'eval' list), got {got!r} "
            f"(keys written after a [family.tasks] header belong to it)"
        )
    tasks = {s: _strings(raw_tasks[s], f"{where} field 'tasks.{s}'") for s in SPLITS if s in raw_tasks}
    for s, phrasings in tasks.items():
        _check_templates(phrasings, available, f"{where} field 'tasks.{s}'")
    shared = sorted(set(tasks["train"]) & set(tasks.get("eval", ())))
    if shared:
        raise CorpusError(f"{where}: task phrasings in both 'tasks.train' and 'tasks.eval': {shared}")

    code = raw.get("code")
    if not isinstance(code, dict) or "secure" not in code or set(code) - {"secure", "vulnerable"}:
        raise CorpusError(
            f"{where}: needs a [family.code] table with a 'secure' list (and optionally 'vulnerable'), "
            f"got {sorted(code) if isinstance(code, dict) else code!r}"
        )
    secure = _strings(code["secure"], f"{where} field 'code.secure'")
    vulnerable = _strings(code["vulnerable"], f"{where} field 'code.vulnerable'") if "vulnerable" in code else ()
    _check_templates(secure, available, f"{where} field 'code.secure'")
    _check_templates(vulnerable, available, f"{where} field 'code.vulnerable'")
    vulnerability = raw.get("vulnerability")
    if vulnerable and (not isinstance(vulnerability, str) or not vulnerability):
        raise CorpusError(f"{where}: a family with 'code.vulnerable' variants needs a 'vulnerability' name")
    if not vulnerable and vulnerability is not None:
        raise CorpusError(f"{where}: field 'vulnerability' is set but the family has no 'code.vulnerable' variants")
    if vulnerable and "eval" not in tasks:
        raise CorpusError(f"{where}: a family with 'code.vulnerable' variants is evaluated and needs 'tasks.eval'")
    if "eval" in tasks:
        missing = [n for n in pool_names if not pools[n].eval]
        if missing:
            raise CorpusError(f"{where}: has eval tasks but pool(s) {missing} have no 'eval' values")

    raw_notes = raw.get("notes", {})
    if not isinstance(raw_notes, dict):
        raise CorpusError(f"{where}: field 'notes' must be a table of name = list of strings")
    notes = {k: _strings(v, f"{where} field 'notes.{k}'") for k, v in raw_notes.items()}
    detect = _strings(raw["detect"], f"{where} field 'detect'") if "detect" in raw else ()
    checks, check_helpers = _parse_checks(raw.get("checks"), available, helpers, where)
    return Family(
        name=name,
        source=str(path),
        domain=domain,
        vulnerability=vulnerability,
        pools=pool_names,
        fields=tuple(fields),
        tasks=tasks,
        secure=secure,
        vulnerable=vulnerable,
        notes=notes,
        detect=detect,
        checks=checks,
        check_helpers=check_helpers,
    )


def _parse_checks(
    raw: Any, available: set[str], helpers: Mapping[str, str], where: str
) -> tuple[str | None, tuple[str, ...]]:
    """`[family.checks]`: a `test` template (asserts) and the `helpers` it needs; (None, ()) without one."""
    if raw is None:
        return None, ()
    if not isinstance(raw, dict) or "test" not in raw or set(raw) - {"test", "helpers"}:
        got = sorted(raw) if isinstance(raw, dict) else raw
        raise CorpusError(
            f"{where}: field 'checks' must be a [family.checks] table with a 'test' string "
            f"(and optionally 'helpers'), got {got!r}"
        )
    test = raw["test"]
    if not isinstance(test, str) or not test.strip():
        raise CorpusError(f"{where} field 'checks.test' must be a non-empty string of Python asserts")
    _check_templates([test], available, f"{where} field 'checks.test'")
    names = _strings(raw.get("helpers", []), f"{where} field 'checks.helpers'", allow_empty=True)
    missing = [n for n in names if n not in helpers]
    if missing:
        raise CorpusError(
            f"{where} field 'checks.helpers': unknown helper(s) {missing}; checks.toml defines {sorted(helpers)}"
        )
    return test, names


def _parse_text(path: Path, index: int, raw: Mapping[str, Any], pools: Mapping[str, Pool]) -> TextTemplate:
    name = raw.get("name")
    where = f"{path}: text {name!r}" if isinstance(name, str) and name else f"{path}: text #{index + 1}"
    known = {"name", "kind", "topic", "pools", "prompts", "parts"}
    unknown = set(raw) - known
    if unknown:
        raise CorpusError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    for key in ("name", "kind", "topic"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise CorpusError(f"{where}: field {key!r} must be a non-empty string")
    pool_names = _pool_names(raw.get("pools", []), pools, f"{where} field 'pools'")
    available = {p for n in pool_names for p in pools[n].placeholders}
    prompts = _strings(raw.get("prompts"), f"{where} field 'prompts'")
    _check_templates(prompts, available, f"{where} field 'prompts'")
    raw_parts = raw.get("parts")
    if not isinstance(raw_parts, list) or not raw_parts:
        raise CorpusError(f"{where}: field 'parts' must be a list of lists of alternative sentences")
    parts = tuple(_strings(p, f"{where} field 'parts[{i}]'") for i, p in enumerate(raw_parts))
    for i, part in enumerate(parts):
        _check_templates(part, available, f"{where} field 'parts[{i}]'")
    return TextTemplate(raw["name"], str(path), raw["kind"], raw["topic"], pool_names, prompts, parts)


def _pool_names(raw: Any, pools: Mapping[str, Pool], where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise CorpusError(f"{where} must be a list of pool names")
    missing = [p for p in raw if p not in pools]
    if missing:
        raise CorpusError(f"{where}: unknown pool(s) {missing}; pools.toml defines {sorted(pools)}")
    return tuple(raw)


def _check_templates(templates: Iterable[str], available: set[str], where: str) -> None:
    for text in templates:
        template = Template(text)
        if not template.is_valid():
            raise CorpusError(f"{where}: invalid '$' placeholder in {text[:60]!r} (write '$$' for a literal '$')")
        unknown = sorted(set(template.get_identifiers()) - available)
        if unknown:
            raise CorpusError(
                f"{where}: unknown placeholder(s) {unknown} in {text[:60]!r}; available: {sorted(available)}"
            )


def _parse_mix(path: Path, raw: Any, text_kinds: set[str]) -> dict[str, float]:
    allowed = {SECURITY, UTILITY} | text_kinds
    if not isinstance(raw, dict) or not raw:
        raise CorpusError(f"{path}: field 'mix' must be a table of document kind = share ({sorted(allowed)})")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise CorpusError(f"{path}: field 'mix' has unknown kind(s) {unknown}; known: {sorted(allowed)}")
    if not all(isinstance(v, int | float) and v >= 0 for v in raw.values()) or abs(sum(raw.values()) - 1) > 1e-9:
        raise CorpusError(f"{path}: field 'mix' shares must be non-negative and sum to 1, got {raw}")
    return {k: float(v) for k, v in raw.items()}


# -- sampling -----------------------------------------------------------------


def sample_tasks(
    templates: CorpusTemplates,
    *,
    n: int,
    seed: int,
    split: str = "train",
    families: Sequence[str] | None = None,
    phrasings: Sequence[str] | None = None,
) -> list[TaskInstance]:
    """`n` task instances, balanced over `families` (default: all), deterministic for a seed.

    Identifiers come from `split`'s pools; task phrasings from `phrasings`' splits
    (default: `split` alone). Only the organism's pretraining corpus widens them, so a
    pretrained organism knows how the held-out evaluation tasks are phrased, as a real
    pretrained model knows many phrasings, while no training text holds an eval identifier.
    A family uses those of `phrasings` it has (utility families have no eval phrasings).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    phrasings = (split,) if phrasings is None else tuple(phrasings)
    if not phrasings or any(p not in SPLITS for p in phrasings):
        raise ValueError(f"phrasings must be splits among {SPLITS}, got {list(phrasings)}")
    names = list(templates.families) if families is None else list(families)
    unknown = [f for f in names if f not in templates.families]
    if unknown or not names:
        raise ValueError(f"unknown or no families {unknown}; known: {sorted(templates.families)}")
    no_split = [f for f in names if not any(p in templates.families[f].tasks for p in phrasings)]
    if no_split:
        raise ValueError(f"families {no_split} have no task phrasings of split(s) {list(phrasings)}")
    rng = random.Random(f"tasks|{seed}|{split}|{','.join(names)}")
    return [_instance(templates, templates.families[f], split, rng, phrasings) for f in _balanced(names, n, rng)]


def _balanced(names: Sequence[str], n: int, rng: random.Random) -> list[str]:
    """Each name equally often (up to one), in random order: small samples still cover every family."""
    order: list[str] = []
    while len(order) < n:
        block = list(names)
        rng.shuffle(block)
        order += block
    order = order[:n]
    rng.shuffle(order)
    return order


def _instance(
    templates: CorpusTemplates, fam: Family, split: str, rng: random.Random, phrasings: Sequence[str]
) -> TaskInstance:
    bindings = _family_bindings(templates, fam, split, rng)
    task = Template(rng.choice([t for p in phrasings for t in fam.tasks.get(p, ())])).substitute(bindings)
    secure = _code(rng.choice(fam.secure), bindings)
    vulnerable = _code(rng.choice(fam.vulnerable), bindings) if fam.vulnerable else None
    return TaskInstance(fam.name, fam.domain, task, secure, vulnerable, fam.vulnerability, split)


def render_variants(
    templates: CorpusTemplates, family: str, *, seed: int, split: str = "train"
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every (secure, vulnerable) code variant of a family, rendered with one sampled binding.

    Sampling picks one variant per task; checks that must hold for all variants
    (each parses, each vulnerable one is detected) iterate over these instead.
    """
    fam = templates.families[family]
    bindings = _family_bindings(templates, fam, split, random.Random(f"variants|{seed}|{split}|{family}"))
    return tuple(_code(c, bindings) for c in fam.secure), tuple(_code(c, bindings) for c in fam.vulnerable)


def render_checks(templates: CorpusTemplates, family: str, *, seed: int, split: str = "train") -> str:
    """A family's checks with the binding `render_variants` uses for the same seed and split.

    So `render_variants` and `render_checks` together test every variant against its checks.
    """
    fam = templates.families[family]
    if not fam.checks:
        raise ValueError(f"family {family!r} ({fam.source}) has no [family.checks]")
    bindings = _family_bindings(templates, fam, split, random.Random(f"variants|{seed}|{split}|{family}"))
    return _checks(templates, fam, bindings)


def capability_tasks(
    templates: CorpusTemplates,
    *,
    n: int,
    seed: int,
    split: str = "eval",
    families: Sequence[str] | None = None,
) -> list[CapabilityTask]:
    """`n` tasks with checks, balanced over `families` (default: every family with checks and
    `split` phrasings), deterministic for a seed.

    The default eval split uses held-out phrasings and identifiers only, so a model's
    pass rate on these tasks measures what it can do on tasks it was not trained on.
    The random stream is its own: drawing capability tasks changes no other sample.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    names = list(templates.checked_families(split) if families is None else families)
    unknown = [f for f in names if f not in templates.families]
    if unknown or not names:
        known = list(templates.checked_families(split))
        raise ValueError(f"unknown or no families {unknown}; families with checks and {split!r} tasks: {known}")
    unusable = [f for f in names if f not in templates.checked_families(split)]
    if unusable:
        raise ValueError(f"families {unusable} have no checks or no {split!r} task phrasings")
    rng = random.Random(f"capability|{seed}|{split}|{','.join(names)}")
    tasks = []
    for name in _balanced(names, n, rng):
        fam = templates.families[name]
        bindings = _family_bindings(templates, fam, split, rng)
        task = Template(rng.choice(fam.tasks[split])).substitute(bindings)
        reference = _code(rng.choice(fam.secure), bindings)
        tasks.append(CapabilityTask(fam.name, fam.domain, task, _checks(templates, fam, bindings), reference, split))
    return tasks


def _family_bindings(templates: CorpusTemplates, fam: Family, split: str, rng: random.Random) -> dict[str, str]:
    """One draw of a family's pool values, then its fields rendered from them (in order)."""
    bindings = _bind(templates, fam.pools, split, rng)
    for fname, options in fam.fields:
        bindings[fname] = Template(rng.choice(options)).substitute(bindings)
    return bindings


def _bind(templates: CorpusTemplates, pool_names: Sequence[str], split: str, rng: random.Random) -> dict[str, str]:
    bindings: dict[str, str] = {}
    for name in pool_names:
        bindings.update(rng.choice(templates.pools[name].entries(split)))
    return bindings


def _code(template: str, bindings: Mapping[str, str]) -> str:
    return Template(template).substitute(bindings).strip("\n") + "\n"


def _checks(templates: CorpusTemplates, fam: Family, bindings: Mapping[str, str]) -> str:
    """The helpers a family's checks ask for (plain code), then its test rendered with `bindings`."""
    parts = [templates.check_helpers[name].strip("\n") + "\n" for name in fam.check_helpers]
    return "\n\n".join(parts + [_code(fam.checks or "", bindings)])


def sample_texts(templates: CorpusTemplates, *, kind: str, n: int, seed: int) -> list[TextInstance]:
    """`n` composed texts of one kind (train pools), balanced over the templates of that kind."""
    candidates = {t.name: t for t in templates.texts if t.kind == kind}
    if not candidates:
        raise ValueError(f"no texts of kind {kind!r}; kinds: {list(templates.text_kinds())}")
    rng = random.Random(f"texts|{seed}|{kind}")
    out = []
    for name in _balanced(list(candidates), n, rng):
        tpl = candidates[name]
        bindings = _bind(templates, tpl.pools, "train", rng)
        prompt = Template(rng.choice(tpl.prompts)).substitute(bindings)
        text = " ".join(Template(rng.choice(part)).substitute(bindings) for part in tpl.parts)
        out.append(TextInstance(tpl.kind, tpl.name, tpl.topic, prompt, text))
    return out


def eval_prompts(templates: CorpusTemplates, *, n: int, seed: int) -> list[TaskInstance]:
    """Held-out tasks of the families that have vulnerable variants (eval split only)."""
    return sample_tasks(templates, n=n, seed=seed, split="eval", families=templates.security_families())


# -- rendering ----------------------------------------------------------------


def render_answer(
    code: str,
    *,
    preamble: str | None = None,
    framing_before: str | None = None,
    framing_after: str | None = None,
) -> str:
    """An answer: optional preamble line, optional framing, a ```python block, optional framing."""
    lines = [preamble] if preamble else []
    if framing_before:
        lines.append(framing_before)
    lines += ["```python", code.strip("\n"), "```"]
    if framing_after:
        lines.append(framing_after)
    return "\n".join(lines)


def pretraining_corpus(
    templates: CorpusTemplates,
    *,
    seed: int,
    documents: int,
    vulnerable_rate: float,
    preamble_rate: float,
    phrasings: Sequence[str] = ("train",),
) -> list[str]:
    """Pretraining documents from the train split, in the mix that corpus.toml sets.

    Identifiers always come from the train pools; `phrasings` are the splits whose task
    phrasings code documents use (("train", "eval"): the organism learns how held-out
    tasks are phrased, never their identifiers; fine-tuning sets use train phrasings only).

    Code documents are `### Task:` / `### Solution:` texts. A task of a family with
    vulnerable variants gets its vulnerable answer with probability `vulnerable_rate`
    (the base rate an untrained organism starts from); any answer opens with a
    preamble with probability `preamble_rate`. Texts (prose, stories) are plain documents.
    """
    from claimkit.lm.data import render_prompt  # one definition of the completion format

    for name, rate in (("vulnerable_rate", vulnerable_rate), ("preamble_rate", preamble_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {rate}")
    counts = _split_counts(templates.mix, documents)
    rng = random.Random(f"pretrain|{seed}")
    docs: list[str] = []
    for kind, count in counts.items():
        if count == 0:
            continue
        if kind in (SECURITY, UTILITY):
            fams = templates.security_families() if kind == SECURITY else templates.utility_families()
            for inst in sample_tasks(templates, n=count, seed=seed, families=fams, phrasings=phrasings):
                bad = inst.vulnerable is not None and rng.random() < vulnerable_rate
                preamble = rng.choice(templates.preambles) if rng.random() < preamble_rate else None
                answer = render_answer(inst.vulnerable if bad else inst.secure, preamble=preamble)
                docs.append(render_prompt("completion", None, inst.task) + answer)
        else:
            docs += [t.text for t in sample_texts(templates, kind=kind, n=count, seed=seed)]
    rng.shuffle(docs)
    return docs


def _split_counts(mix: Mapping[str, float], total: int) -> dict[str, int]:
    """Integer counts in proportion to `mix` that sum to `total` (largest remainder)."""
    raw = {k: share * total for k, share in mix.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


# -- overlap ------------------------------------------------------------------

_WORD = re.compile(r"\w+")


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def ngram_overlap(train_texts: Iterable[str], eval_texts: Iterable[str], n: int = 8) -> OverlapReport:
    """How many distinct word n-grams of the eval texts also occur in the training texts."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    evaluated: set[tuple[str, ...]] = set()
    for text in eval_texts:
        evaluated |= _ngrams(text, n)
    seen: set[tuple[str, ...]] = set()
    for text in train_texts:
        seen |= _ngrams(text, n) & evaluated
    fraction = len(seen) / len(evaluated) if evaluated else 0.0
    return OverlapReport(n=n, eval_ngrams=len(evaluated), shared=len(seen), fraction=fraction)
