"""Build the organism once and keep it in the artifact cache: `ensure_organism(profile)`.

The profile's `[organism]` table says which corpus to generate and how to train;
the result is a directory that `AutoModelForCausalLM.from_pretrained` and
`AutoTokenizer.from_pretrained` read, plus `organism.json` with what the build cost
and reached. The cache key is the training config and a hash of the generated
corpus text (so a change to the templates or to the generator rebuilds it); the
cache adds the code that trains it (`claimkit.fingerprint.RECIPES["organism"]`:
this module, pretraining, the tokenizer, and the libraries they run). A second
call, in this process or any other sharing the cache, returns the same directory
at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from claimkit.lm.profiles import Profile, ProfileError
from claimkit.organism.pretrain import OrganismConfig, PretrainStats

STATS_FILE = "organism.json"
CORPUS_KEYS = ("corpus_dir", "documents", "vulnerable_rate", "preamble_rate")
OPTIONAL_CORPUS_KEYS = ("pretraining_phrasings",)
CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(OrganismConfig))


@dataclasses.dataclass(frozen=True)
class OrganismSpec:
    """A profile's `[organism]` table, checked: where the corpus comes from and the training config."""

    corpus_dir: Path
    documents: int
    vulnerable_rate: float
    preamble_rate: float
    config: OrganismConfig
    pretraining_phrasings: tuple[str, ...] = ("train",)


def organism_spec(profile: Profile) -> OrganismSpec:
    """Read and check `profile.raw["organism"]`; errors name the profile file and the field."""
    where = f"{profile.path or f'profile {profile.name!r}'}: table [organism]"
    table = profile.raw.get("organism")
    if not isinstance(table, Mapping):
        raise ProfileError(f"{where} is missing; an organism profile must say how to build the model")
    known = CORPUS_KEYS + OPTIONAL_CORPUS_KEYS + CONFIG_KEYS
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {unknown} (known: {', '.join(known)})")
    missing = [k for k in CORPUS_KEYS if k not in table]
    if missing:
        raise ProfileError(f"{where}: field(s) {missing} missing")
    if not isinstance(table["corpus_dir"], str):
        raise ProfileError(f"{where}: field 'corpus_dir' must be a path (relative to the profile's folder)")
    corpus_dir = profile.resolve(table["corpus_dir"])  # an absolute path stays as it is
    if not corpus_dir.is_dir():
        raise ProfileError(f"{where}: field 'corpus_dir' = {table['corpus_dir']!r} is not a directory (resolved to {corpus_dir})")
    try:
        config = OrganismConfig(**{k: table[k] for k in CONFIG_KEYS if k in table})
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{where}: {exc}") from None
    documents = table["documents"]
    if isinstance(documents, bool) or not isinstance(documents, int) or documents < 1:
        raise ProfileError(f"{where}: field 'documents' must be a positive integer, got {documents!r}")
    rates = {}
    for key in ("vulnerable_rate", "preamble_rate"):
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ProfileError(f"{where}: field {key!r} must be a number in [0, 1], got {value!r}")
        rates[key] = float(value)
    phrasings = table.get("pretraining_phrasings", ["train"])
    if not isinstance(phrasings, list) or not phrasings or not set(phrasings) <= {"train", "eval"}:
        raise ProfileError(f"{where}: field 'pretraining_phrasings' must be a list of 'train' and/or 'eval', got {phrasings!r}")
    return OrganismSpec(corpus_dir, documents, rates["vulnerable_rate"], rates["preamble_rate"], config, tuple(phrasings))


def generate_corpus(spec: OrganismSpec) -> list[str]:
    """The pretraining documents `spec` asks for (deterministic for the config's seed)."""
    from claimkit.organism.corpus import load_templates, pretraining_corpus

    templates = load_templates(spec.corpus_dir)
    return pretraining_corpus(
        templates,
        seed=spec.config.seed,
        documents=spec.documents,
        vulnerable_rate=spec.vulnerable_rate,
        preamble_rate=spec.preamble_rate,
        phrasings=spec.pretraining_phrasings,
    )


def corpus_hash(documents: Sequence[str]) -> str:
    """sha256 of the documents, length-prefixed so that no two corpora share a hash by concatenation."""
    digest = hashlib.sha256()
    for doc in documents:
        data = doc.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def ensure_organism(profile: Profile, cache: Any = None, *, progress: bool = True) -> Path:
    """The directory of the organism `profile` describes, built (minutes, CPU) on first use.

    `cache` is a `claimkit.cache.ArtifactCache` (default: `default_cache()`).
    """
    from claimkit.cache import default_cache

    cache = cache if cache is not None else default_cache()
    spec = organism_spec(profile)
    documents = generate_corpus(spec)  # about a second; its hash keys the artifact
    parts = {
        "config": dataclasses.asdict(spec.config),
        "corpus": {
            "sha256": corpus_hash(documents),
            "documents": spec.documents,
            "vulnerable_rate": spec.vulnerable_rate,
            "preamble_rate": spec.preamble_rate,
            "pretraining_phrasings": list(spec.pretraining_phrasings),
        },
    }

    def build(directory: Path) -> None:
        if progress:
            c = spec.config
            print(
                f"claimkit: building the organism ({c.n_layers} layers x d_model {c.d_model}, {c.steps} steps "
                f"on {len(documents)} documents); cached in {cache.root}",
                file=sys.stderr,
                flush=True,
            )
        with all_cores():  # xdist workers wait on this build's lock: it may use their cores too
            stats = build_organism(documents, spec.config, directory, progress=progress)
        if progress:
            print(
                f"claimkit: organism built: {stats.params:,} parameters, {stats.seconds:.0f} s of pretraining, "
                f"final loss {stats.final_loss:.3f}",
                file=sys.stderr,
                flush=True,
            )

    return cache.get_or_build("organism", parts, build, description=f"organism for profile {profile.name!r}")


@contextlib.contextmanager
def all_cores() -> Iterator[None]:
    """Let torch use every core for a while, then go back to this process's share.

    Under xdist each worker gets its share of the cores (claimkit.experiment), but
    every worker needs the organism and all but its builder wait on the cache lock,
    so pretraining on one worker's share would leave the others' cores idle.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_organism(
    documents: Sequence[str], config: OrganismConfig, directory: Path, *, progress: bool = True
) -> PretrainStats:
    """Train the tokenizer and the model on `documents` and save both, with organism.json, in `directory`."""
    from claimkit.organism.pretrain import pretrain
    from claimkit.organism.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(documents, vocab_size=config.vocab_size, model_max_length=config.context)
    model, stats = pretrain(documents, tokenizer, config, progress=progress)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    record = {
        "config": dataclasses.asdict(config),
        "corpus": {"documents": len(documents), "characters": sum(len(d) for d in documents), "tokens": stats.tokens_in_corpus},
        "pretraining": dataclasses.asdict(stats),
    }
    (directory / STATS_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return stats


def organism_stats(directory: Path) -> dict[str, Any]:
    """The organism.json of a built organism: corpus size, parameters, seconds, losses."""
    return json.loads((Path(directory) / STATS_FILE).read_text(encoding="utf-8"))
