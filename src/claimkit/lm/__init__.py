"""Language models for claims: profiles, loading, fine-tuning, sampling, activations.

Data flows one way: `load_profile` -> `load_model` -> `finetune` / `load_finetuned`
-> `sample` -> `capture_residual` / `token_entropies`. Every function takes and
returns plain values; caching is the caller's (see `claimkit.cache`).
None of these modules imports torch or transformers until a function is called.
"""

from claimkit.lm.activations import capture_residual, decoder_layers, residual_hook, token_entropies
from claimkit.lm.data import Example, encode_completion, encode_prompt, render_example, render_prompt
from claimkit.lm.device import ModelLoadError, choose_device, choose_dtype
from claimkit.lm.finetune import FinetuneResult, TrainConfig, finetune, load_finetuned
from claimkit.lm.load import LoadedModel, load_model, locate_gguf
from claimkit.lm.profiles import Profile, ProfileError, load_profile, load_profiles
from claimkit.lm.generation import Generation
from claimkit.lm.sample import sample

__all__ = [
    "Example",
    "FinetuneResult",
    "Generation",
    "LoadedModel",
    "ModelLoadError",
    "Profile",
    "ProfileError",
    "TrainConfig",
    "capture_residual",
    "choose_device",
    "choose_dtype",
    "decoder_layers",
    "encode_completion",
    "encode_prompt",
    "finetune",
    "load_finetuned",
    "load_model",
    "load_profile",
    "load_profiles",
    "locate_gguf",
    "render_example",
    "render_prompt",
    "residual_hook",
    "sample",
    "token_entropies",
]
