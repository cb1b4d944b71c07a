"""Model profiles: which model a claim runs on and how it is trained, sampled and read.

A profile is a TOML file in `fixtures/profiles/` (the file name is the profile
name). It is data, not a code path: the engine reads the model source, text
format, LoRA/fine-tuning/sampling settings, activation layer and SAE source from
it, and tests never branch on a profile's name. Validated on load; errors name
the file and the field.

Kinds:
  organism  the small model claimkit trains itself (table `[organism]`, built by
            `claimkit.organism.build.ensure_organism`)
  gguf      a GGUF file, from an installed distribution or an env var path
  hub       a Hugging Face model id, or a local directory named by an env var
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from claimkit.lm.train_config import TrainConfig
from claimkit.toml_file import read_toml

KINDS = ("organism", "gguf", "hub")
FORMATS = ("completion", "chat")
ROLES = ("behaviour", "mechanism")
_TOP_LEVEL = {
    "name", "description", "about", "kind", "format", "needs_gpu", "requires", "models",
    "lora", "finetune", "sampling", "activations", "sae", "organism",
}  # fmt: skip


LORA_KEYS = ("r", "alpha", "dropout", "target_modules")
SAMPLING_KEYS = ("max_new_tokens", "temperature", "top_p", "batch_size", "cache_implementation", "sampler", "compile")
SAMPLERS = ("generate", "fast")  # transformers' generate, or claimkit.lm.fast_sample


class ProfileError(ValueError):
    """A profile file is missing or malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Profile:
    name: str
    kind: Literal["organism", "gguf", "hub"]
    format: Literal["completion", "chat"]
    needs_gpu: bool
    models: Mapping[str, Mapping[str, Any]]  # role ("behaviour"/"mechanism") -> source
    lora: Mapping[str, Any]
    finetune: Mapping[str, Any]
    sampling: Mapping[str, Any]
    activations: Mapping[str, Any]
    sae: Mapping[str, Any]
    raw: Mapping[str, Any]  # the whole parsed file, e.g. raw["organism"]
    path: Path | None = None  # the file it came from; relative paths in it are relative to its folder
    description: str = ""
    requires: tuple[str, ...] = ()  # pip requirements its model needs beyond claimkit's, e.g. "transformers>=5.22"

    def __hash__(self) -> int:  # the tables are dicts; a profile is identified by its name and file
        return hash((self.name, self.path))

    def source(self, role: str) -> Mapping[str, Any]:
        """The model source for `role`; a profile without a mechanism model uses its behaviour model."""
        if role not in ROLES:
            raise ProfileError(f"profile {self.name!r}: unknown model role {role!r} (roles: {', '.join(ROLES)})")
        if role in self.models:
            return self.models[role]
        return self.models.get("behaviour", {})

    def format_for(self, role: str) -> str:
        """The text format of the model playing `role` (a source may override the profile's)."""
        return str(self.source(role).get("format", self.format))

    def resolve(self, relative: str | Path) -> Path:
        """A path written in the profile, made absolute against the profile's folder."""
        base = self.path.parent if self.path is not None else Path.cwd()
        return (base / Path(relative).expanduser()).resolve()

    def finetune_hparams(self) -> dict[str, Any]:
        """What `claimkit.lm.finetune.finetune` takes: the finetune table plus `lora`."""
        return {**self.finetune, "lora": dict(self.lora)}

    def sampling_options(self) -> dict[str, Any]:
        """What `claimkit.lm.sample.sample` takes from the [sampling] table (besides seed and progress)."""
        s = self.sampling
        return {
            "max_new_tokens": int(s.get("max_new_tokens", 160)), "temperature": float(s.get("temperature", 1.0)),
            "top_p": float(s.get("top_p", 1.0)), "batch_size": int(s.get("batch_size", 64)),
            "cache_implementation": s.get("cache_implementation"), "sampler": str(s.get("sampler", "generate")),
            "compile": bool(s.get("compile", False)),
        }  # fmt: skip


def load_profile(name: str, directory: str | Path) -> Profile:
    """The profile `<directory>/<name>.toml`, validated."""
    directory = Path(directory)
    file = directory / f"{name}.toml"
    if not file.is_file():
        known = sorted(p.stem for p in directory.glob("*.toml")) if directory.is_dir() else []
        raise ProfileError(
            f"{file}: no such profile {name!r} (profiles in {directory}: {', '.join(known) or 'none'})"
        )
    return parse_profile_file(file)


def load_profiles(directory: str | Path) -> dict[str, Profile]:
    """Every profile in `directory`, by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ProfileError(f"{directory}: profile directory not found")
    return {file.stem: parse_profile_file(file) for file in sorted(directory.glob("*.toml"))}


def parse_profile_file(file: str | Path) -> Profile:
    file = Path(file)
    data = read_toml(file, ProfileError, "profile")
    return _parse(file, data)


# -- validation ---------------------------------------------------------------


def _parse(file: Path, data: dict[str, Any]) -> Profile:
    where = str(file)
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(sorted(_TOP_LEVEL))})")
    name = _get(data, "name", str, where, default=file.stem)
    if name != file.stem:
        raise ProfileError(f"{where}: field 'name' is {name!r} but the file is named {file.stem!r}; they must match")
    kind = _choice(data, "kind", KINDS, where)
    fmt = _choice(data, "format", FORMATS, where)
    needs_gpu = _get(data, "needs_gpu", bool, where, required=True)
    requires = _requirements(data, where)

    models = _get(data, "models", dict, where, default={})
    for role, source in models.items():
        _check_source(where, f"models.{role}", kind, role, source)
    if kind != "organism" and "behaviour" not in models:
        raise ProfileError(f"{where}: field 'models.behaviour' is missing (a {kind} profile must name its model)")
    if kind == "organism":
        _get(data, "organism", dict, where, required=True)
    elif "organism" in data:
        raise ProfileError(f"{where}: field 'organism' is only meaningful for kind = \"organism\" (this is {kind!r})")

    lora = _get(data, "lora", dict, where, required=True)
    _known_keys(lora, "lora", LORA_KEYS, where)
    _num(lora, "r", where, "lora", integer=True, low=1)
    _num(lora, "alpha", where, "lora", low=0, low_open=True)
    _num(lora, "dropout", where, "lora", low=0, high=1, high_open=True, required=False)
    targets = lora.get("target_modules")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise ProfileError(f"{where}: field 'lora.target_modules' must be a non-empty list of module names, got {targets!r}")

    finetune = _get(data, "finetune", dict, where, required=True)
    _known_keys(finetune, "finetune", _finetune_keys(), where)
    _num(finetune, "epochs", where, "finetune", integer=True, low=1)
    _num(finetune, "batch_size", where, "finetune", integer=True, low=1)
    _num(finetune, "lr", where, "finetune", low=0, low_open=True)
    _num(finetune, "max_length", where, "finetune", integer=True, low=8)
    for flag in _finetune_flags():
        if not isinstance(finetune.get(flag, False), bool):
            raise ProfileError(f"{where}: field 'finetune.{flag}' must be a boolean, got {finetune[flag]!r}")

    sampling = _get(data, "sampling", dict, where, required=True)
    _known_keys(sampling, "sampling", SAMPLING_KEYS, where)
    _num(sampling, "max_new_tokens", where, "sampling", integer=True, low=1)
    _num(sampling, "temperature", where, "sampling", low=0)
    _num(sampling, "top_p", where, "sampling", low=0, low_open=True, high=1)
    _num(sampling, "batch_size", where, "sampling", integer=True, low=1)
    sampler = sampling.get("sampler", "generate")
    if sampler not in SAMPLERS:
        raise ProfileError(f"{where}: field 'sampling.sampler' must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if "compile" in sampling:
        if not isinstance(sampling["compile"], bool):
            raise ProfileError(f"{where}: field 'sampling.compile' must be a boolean, got {sampling['compile']!r}")
        if sampling["compile"] and sampler != "fast":
            raise ProfileError(f"{where}: field 'sampling.compile' applies to sampler = \"fast\" only; set that or drop it")

    activations = _get(data, "activations", dict, where, required=True)
    _num(activations, "layer", where, "activations", integer=True, low=0)

    sae = _get(data, "sae", dict, where, default={})
    if sae and not (sae.get("source") == "train" or ("release" in sae and "id" in sae)):
        raise ProfileError(
            f"{where}: field 'sae' must be either {{source = \"train\"}} or name a pretrained SAE "
            f"with 'release' and 'id', got {sae!r}"
        )

    return Profile(
        name=name,
        kind=kind,
        format=fmt,
        needs_gpu=needs_gpu,
        models=models,
        lora=lora,
        finetune=finetune,
        sampling=sampling,
        activations=activations,
        sae=sae,
        raw=data,
        path=file.resolve(),
        description=_get(data, "description", str, where, default=""),
        requires=requires,
    )


def _requirements(data: Mapping[str, Any], where: str) -> tuple[str, ...]:
    """The profile's `requires` list, each entry a valid pip requirement such as "transformers>=5.22"."""
    from packaging.requirements import InvalidRequirement, Requirement

    entries = _get(data, "requires", list, where, default=[])
    for entry in entries:
        try:
            Requirement(entry if isinstance(entry, str) else "")
        except InvalidRequirement:
            raise ProfileError(f"{where}: field 'requires' must list pip requirements such as "
                               f"\"transformers>=5.22\", got {entry!r}") from None
    return tuple(entries)


def _check_source(file: str, field_name: str, kind: str, role: str, source: Any) -> None:
    def error(sub: str, text: str) -> ProfileError:
        return ProfileError(f"{file}: field '{field_name}{sub}': {text}")

    if role not in ROLES:
        raise error("", f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    if not isinstance(source, dict):
        raise error("", f"must be a table, got {type(source).__name__}")
    if "format" in source and source["format"] not in FORMATS:
        raise error(".format", f"must be one of {', '.join(FORMATS)}, got {source['format']!r}")
    if kind == "gguf":
        if not isinstance(source.get("file"), str):
            raise error(".file", "a gguf source needs 'file' (the .gguf path inside its distribution)")
        if not (isinstance(source.get("distribution"), str) or isinstance(source.get("env"), str)):
            raise error("", "a gguf source needs 'distribution' (an installed package) or 'env' (a variable naming the file)")
    elif kind == "hub":
        if not isinstance(source.get("id"), str) or not source["id"]:
            raise error(".id", "a hub source needs 'id' (a Hugging Face model id)")
    for key in ("env", "distribution", "revision"):
        if key in source and not isinstance(source[key], str):
            raise error(f".{key}", f"must be a string, got {type(source[key]).__name__}")


def _finetune_flags() -> tuple[str, ...]:
    return TrainConfig.flags()


def _finetune_keys() -> tuple[str, ...]:
    """The loop's knobs are the table's keys."""
    return tuple(f for f in TrainConfig.__dataclass_fields__ if not f.startswith("lora_"))


def _known_keys(table: Mapping[str, Any], prefix: str, known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        names = ", ".join(f"'{prefix}.{k}'" for k in unknown)
        raise ProfileError(f"{where}: unknown field(s) {names} (known: {', '.join(known)})")


def _get(data: Mapping[str, Any], key: str, kind: type, where: str, *, required: bool = False, default: Any = None) -> Any:
    if key not in data:
        if required:
            raise ProfileError(f"{where}: field {key!r} is missing")
        return default
    value = data[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ProfileError(f"{where}: field {key!r} must be a {_type_name(kind)}, got {type(value).__name__} {value!r}")
    return value


def _choice(data: Mapping[str, Any], key: str, allowed: tuple[str, ...], where: str) -> Any:
    value = _get(data, key, str, where, required=True)
    if value not in allowed:
        raise ProfileError(f"{where}: field {key!r} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _num(
    table: Mapping[str, Any],
    key: str,
    where: str,
    prefix: str,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    required: bool = True,
) -> None:
    name = f"{prefix}.{key}"
    if key not in table:
        if required:
            raise ProfileError(f"{where}: field {name!r} is missing")
        return
    value = table[key]
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ProfileError(f"{where}: field {name!r} must be {'an integer' if integer else 'a number'}, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        if high is not None:
            bounds = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        else:
            bounds = f"> {low}" if low_open else f">= {low}"
        raise ProfileError(f"{where}: field {name!r} must be {bounds}, got {value!r}")


def _type_name(kind: type) -> str:
    return {str: "string", bool: "boolean (true/false)", dict: "table", list: "list", int: "integer"}.get(kind, kind.__name__)
