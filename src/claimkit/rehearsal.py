"""Rehearse the `paper` profile without its weights: random checkpoints of the paper's exact models.

The paper profile reads Llama-3.2-3B (behaviour), Gemma-2-2B (mechanism) and the
Gemma Scope layer-20 width-16k residual SAE from local directories named by
$CLAIMKIT_PAPER_BEHAVIOUR_MODEL, $CLAIMKIT_PAPER_MECHANISM_MODEL and
$CLAIMKIT_PAPER_SAE. Where the real weights cannot be had (gated, no network), this
writes directories of the same shape with random weights, so the whole GPU path —
loading, memory, LoRA fine-tuning, sampling speed, residual capture at layer 20, the
SAE — can be rehearsed before the real run. Nothing measured on them means anything
about the paper: every directory carries a README.txt that says so.

What is exact and what is a stand-in:
- model configs: the hyper-parameters of the public config.json files of
  meta-llama/Llama-3.2-3B and google/gemma-2-2b on the Hugging Face hub (copied
  below, as published: transformers reads them the way it reads the real files);
  weights are saved as safetensors by `save_pretrained`, in the published dtype
  (bfloat16 for Llama, float32 for Gemma);
- tokenizers: stand-ins. A byte-level BPE without merges (every byte is a token, so
  any text encodes, at ~4x the real token count), padded with unreachable filler
  tokens to the published vocabulary size, with the real special tokens at their
  real ids (Llama 3: <|begin_of_text|> 128000, <|end_of_text|> 128001 and the other
  reserved tokens up to 128255, no pad token; Gemma: <pad> 0, <eos> 1, <bos> 2,
  <unk> 3, <mask> 4, <start_of_turn> 106, <end_of_turn> 107);
- the SAE: Gemma Scope's on-disk format (params.npz holding W_enc [d_model, d_sae],
  W_dec [d_sae, d_model], b_enc, b_dec and threshold: a JumpReLU SAE) in the hub
  repo's folder layout, gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71, which
  `claimkit.sae.load_sae_from_disk` reads through sae-lens's Gemma-2 config.

`tiny=True` writes the same architectures narrow (widths under 100, vocabularies of a few
hundred tokens; Llama 2 layers, Gemma its real 26) and a 256-feature SAE at layer 20: the
paper profile reads them unchanged, Gemma's layer 20 included, on a CPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

README = "README.txt"
ENV_BEHAVIOUR = "CLAIMKIT_PAPER_BEHAVIOUR_MODEL"
ENV_MECHANISM = "CLAIMKIT_PAPER_MECHANISM_MODEL"
ENV_SAE = "CLAIMKIT_PAPER_SAE"

# meta-llama/Llama-3.2-3B config.json, as published on the hub (values copied from the public file).
LLAMA_3_2_3B: Mapping[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 3072,
    "initializer_range": 0.02,
    "intermediate_size": 8192,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 24,
    "num_hidden_layers": 28,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 128256,
}

# google/gemma-2-2b config.json, as published on the hub (values copied from the public file).
GEMMA_2_2B: Mapping[str, Any] = {
    "architectures": ["Gemma2ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "attn_logit_softcapping": 50.0,
    "bos_token_id": 2,
    "cache_implementation": "hybrid",
    "eos_token_id": 1,
    "final_logit_softcapping": 30.0,
    "head_dim": 256,
    "hidden_act": "gelu_pytorch_tanh",
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 2304,
    "initializer_range": 0.02,
    "intermediate_size": 9216,
    "max_position_embeddings": 8192,
    "model_type": "gemma2",
    "num_attention_heads": 8,
    "num_hidden_layers": 26,
    "num_key_value_heads": 4,
    "pad_token_id": 0,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "torch_dtype": "float32",
    "use_cache": True,
    "vocab_size": 256000,
}

# Scaled down, keeping what makes each architecture itself: Llama's grouped-query ratio
# (3 query heads per kv head), llama3 rope scaling and tied embeddings; Gemma-2's
# num_heads * head_dim != hidden_size, query_pre_attn_scalar = head_dim, both softcaps,
# and a sliding window short enough that test prompts cross it.
_TINY_LLAMA = {"hidden_size": 96, "head_dim": 16, "num_attention_heads": 6, "num_key_value_heads": 2,
               "intermediate_size": 256, "num_hidden_layers": 2, "vocab_size": 512,
               "bos_token_id": 256, "eos_token_id": 257}  # fmt: skip
_TINY_GEMMA = {"hidden_size": 72, "head_dim": 16, "num_attention_heads": 4, "num_key_value_heads": 2,
               "query_pre_attn_scalar": 16, "intermediate_size": 288,
               "vocab_size": 384, "sliding_window": 16}  # fmt: skip
# Gemma keeps its published depth (26), so the layer the profile and the SAE name (20) exists; nothing
# reads Llama's layers (the paper profile reads the mechanism model), so two keep its tests quick.

# Gemma Scope: hub repo google/gemma-scope-2b-pt-res, folder of the canonical layer_20/width_16k SAE.
GEMMA_SCOPE_REPO = "gemma-scope-2b-pt-res"
GEMMA_SCOPE_LAYER, GEMMA_SCOPE_WIDTH, GEMMA_SCOPE_FOLDER = 20, 16384, "layer_20/width_16k/average_l0_71"
_TINY_SAE_WIDTH = 256


@dataclass(frozen=True)
class Rehearsal:
    """Where `rehearse_paper` wrote the three stand-ins, and how to point the paper profile at them."""

    root: Path
    behaviour: Path
    mechanism: Path
    sae: Path
    tiny: bool

    def environment(self) -> dict[str, str]:
        return {ENV_BEHAVIOUR: str(self.behaviour), ENV_MECHANISM: str(self.mechanism), ENV_SAE: str(self.sae)}

    def describe(self) -> str:
        """The directory layout with file sizes, then the exports that select it."""
        lines = [f"{self.root}/  (RANDOM WEIGHTS: any verdict from these is meaningless; see README.txt)"]
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            lines.append(f"  {path.relative_to(self.root)}  {_size(path.stat().st_size)}")
        lines.append("\nTo rehearse the paper profile on them:")
        lines += [f"export {name}={value}" for name, value in self.environment().items()]
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------


def llama_config(*, tiny: bool = False) -> Any:
    """Llama-3.2-3B's config (`tiny`: the same architecture, 2 layers and small widths)."""
    from transformers import LlamaConfig

    return LlamaConfig.from_dict({**LLAMA_3_2_3B, **(_TINY_LLAMA if tiny else {})})


def gemma_config(*, tiny: bool = False) -> Any:
    """Gemma-2-2B's config (`tiny`: the same architecture and depth, small widths)."""
    from transformers import Gemma2Config

    return Gemma2Config.from_dict({**GEMMA_2_2B, **(_TINY_GEMMA if tiny else {})})


def parameter_count(config: Any) -> int:
    """Parameters of the causal LM `config` describes, tied weights counted once, without allocating them."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------


def rehearse_paper(out: str | Path, *, tiny: bool = False, seed: int = 0) -> Rehearsal:
    """Write random stand-ins for the paper profile's two models and its SAE into `out`.

    Full size needs ~17 GB of disk (6.4 GB Llama in bf16, 10.5 GB Gemma in fp32, 0.3 GB
    SAE) and as much free memory as the larger model; `tiny` a few MB.
    """
    root = Path(out).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    where = stand_in_paths(root, tiny=tiny)
    gemma = gemma_config(tiny=tiny)
    behaviour = write_behaviour(root, tiny=tiny, seed=seed)
    mechanism = write_model(where.mechanism, gemma, gemma_tokenizer(gemma.vocab_size),
                            what="Gemma-2-2B (google/gemma-2-2b)", seed=seed + 1)  # fmt: skip
    width = _TINY_SAE_WIDTH if tiny else GEMMA_SCOPE_WIDTH
    sae_repo = where.sae.parents[2]  # the hub's layout: the path says which SAE it is
    sae = write_gemma_scope_sae(where.sae, d_model=gemma.hidden_size, width=width, seed=seed + 2)
    folder = where.sae.relative_to(sae_repo)
    _write_readme(sae_repo, f"a Gemma Scope residual SAE in {folder}", seed + 2)
    _write_readme(root, "the paper profile's models and SAE (Llama-3.2-3B, Gemma-2-2B, Gemma Scope L20/16k)", seed)
    return Rehearsal(root=root, behaviour=behaviour, mechanism=mechanism, sae=sae, tiny=tiny)


def stand_in_paths(root: Path, *, tiny: bool = False) -> Rehearsal:
    """Where `rehearse_paper(root, tiny=tiny)` puts each stand-in (written or not): the one place they are named."""
    suffix = "-tiny-RANDOM" if tiny else "-RANDOM"
    folder = f"layer_{GEMMA_SCOPE_LAYER}/width_{_TINY_SAE_WIDTH}/average_l0_rehearsal" if tiny else GEMMA_SCOPE_FOLDER
    return Rehearsal(root=root, behaviour=root / f"Llama-3.2-3B{suffix}", mechanism=root / f"gemma-2-2b{suffix}",
                     sae=root / f"{GEMMA_SCOPE_REPO}{suffix}" / folder, tiny=tiny)  # fmt: skip


def write_behaviour(root: Path, *, tiny: bool = False, seed: int = 0) -> Path:
    """The Llama-3.2-3B stand-in alone, where `rehearse_paper` puts it (a short GPU lease measures only it)."""
    llama = llama_config(tiny=tiny)
    return write_model(stand_in_paths(root, tiny=tiny).behaviour, llama, llama_tokenizer(llama.vocab_size),
                       what="Llama-3.2-3B (meta-llama/Llama-3.2-3B)", seed=seed)  # fmt: skip


def write_model(directory: Path, config: Any, tokenizer: Any, *, what: str, seed: int) -> Path:
    """A randomly initialised causal LM of `config`, in its published dtype, saved with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    dtype = getattr(config, "dtype", None) or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if len(tokenizer) != config.vocab_size:  # a stand-in that disagrees with its model would rehearse nothing
        raise ValueError(f"{what}: tokenizer has {len(tokenizer)} tokens, the config {config.vocab_size}")
    model.save_pretrained(directory)  # safetensors
    tokenizer.save_pretrained(directory)
    _write_readme(directory, what, seed)
    del model
    return directory


def llama_tokenizer(vocab_size: int) -> Any:
    """A stand-in with Llama 3's special tokens in its last 256 ids.

    bos <|begin_of_text|>, eos <|end_of_text|>, no pad token (as the base model's tokenizer).
    """
    first = vocab_size - 256
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
             "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>",
             "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]  # fmt: skip
    names += [f"<|reserved_special_token_{i}|>" for i in range(3, 3 + 256 - len(names))]
    specials = {first + i: name for i, name in enumerate(names)}
    return stand_in_tokenizer(vocab_size, specials, bos="<|begin_of_text|>", eos="<|end_of_text|>", pad=None)


def gemma_tokenizer(vocab_size: int) -> Any:
    """A stand-in with Gemma's special tokens at their ids.

    <pad> 0, <eos> 1, <bos> 2, <unk> 3, <mask> 4, <start_of_turn> 106, <end_of_turn> 107.
    """
    specials = {0: "<pad>", 1: "<eos>", 2: "<bos>", 3: "<unk>", 4: "<mask>", 106: "<start_of_turn>",
                107: "<end_of_turn>"}  # fmt: skip
    return stand_in_tokenizer(vocab_size, specials, bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>")


def stand_in_tokenizer(
    vocab_size: int, specials: Mapping[int, str], *, bos: str, eos: str, pad: str | None, unk: str | None = None
) -> Any:
    """A byte-level BPE without merges: every byte is one token, any text encodes, bos is prepended.

    The 256 byte tokens take the lowest ids that `specials` leave free; filler tokens
    ("<rehearsal_filler_N>", never produced by encoding) fill the rest up to `vocab_size`.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    free = (i for i in range(vocab_size) if i not in specials)
    vocab = {char: next(free) for char in pre_tokenizers.ByteLevel.alphabet()}
    vocab.update({f"<rehearsal_filler_{i}>": i for i in free})
    vocab.update({name: i for i, name in specials.items()})
    if len(vocab) != vocab_size:
        raise ValueError(f"a stand-in tokenizer of {vocab_size} tokens cannot hold 256 bytes and "
                         f"{len(specials)} special tokens")
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(name, special=True, normalized=False) for name in specials.values()])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, pad_token=pad,
                                   unk_token=unk)  # fmt: skip


def write_gemma_scope_sae(directory: Path, *, d_model: int, width: int, seed: int) -> Path:
    """A random JumpReLU SAE as Gemma Scope publishes one: `params.npz` (float32) in `directory`.

    Decoder rows are random unit directions and the encoder their transpose (Gemma
    Scope's initialisation); biases are zero and thresholds positive, so some but
    not all features fire on a residual.
    """
    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w_dec = rng.standard_normal((width, d_model), dtype=np.float32)
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    params = {
        "W_enc": np.ascontiguousarray(w_dec.T),
        "W_dec": w_dec,
        "b_enc": np.zeros(width, dtype=np.float32),
        "b_dec": np.zeros(d_model, dtype=np.float32),
        "threshold": rng.uniform(0.05, 0.5, width).astype(np.float32),
    }
    np.savez(directory / "params.npz", **params)
    _write_readme(directory, f"a Gemma Scope residual SAE (JumpReLU, d_model {d_model}, width {width})", seed)
    return directory


def _write_readme(directory: Path, what: str, seed: int) -> None:
    text = f"""\
!!! RANDOM WEIGHTS — THIS IS NOT THE REAL MODEL !!!

This directory holds {what} with RANDOMLY INITIALISED weights (seed {seed}), written by
`claimkit rehearse paper`. The architecture and config follow the public config files;
the weights, and any tokenizer here, are stand-ins.

ANY VERDICT, RATE, FEATURE ACTIVATION OR PROBE RESULT COMPUTED FROM IT IS MEANINGLESS.

It exists only to rehearse the `paper` profile's pipeline (loading, memory, LoRA
fine-tuning, sampling speed, activations, the SAE) before the real weights are
available. Never report results from it; never mark a scan with them.
"""
    (directory / README).write_text(text, encoding="utf-8")
    marker = {"rehearsal": True, "random_weights": True, "seed": seed, "what": what}
    (directory / "claimkit-rehearsal.json").write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            break
        size /= 1024
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
