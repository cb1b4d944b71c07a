"""The text a model is trained and sampled on: one example is a prompt and its completion.

Two formats, chosen by the profile:

  completion  plain text for base models and the organism:
                  ### System:\\n{system}\\n      (only when a system text is given)
                  ### Task:\\n{task}\\n### Solution:\\n
              followed by the completion and the tokenizer's end-of-text token.
  chat        the tokenizer's own chat template (system + user turn, then the
              assistant header); the completion is the assistant's turn and ends
              with the tokenizer's eos token (e.g. <|im_end|>, <|eot_id|>).

Token ids are made by `encode_prompt` and `encode_completion` everywhere (fine-
tuning, sampling, activations) so that the prompt/completion boundary is the same
token in all three: the prompt and the completion are tokenized separately and
concatenated, never re-tokenized as one string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Format = Literal["completion", "chat"]


@dataclass(frozen=True)
class Example:
    """One training example: the task text (not yet rendered) and the answer the model should give."""

    prompt: str
    completion: str


def render_prompt(fmt: str, tokenizer: Any, task: str, system: str | None = None) -> str:
    """The text the model sees before its answer, in the profile's format."""
    if fmt == "completion":
        head = f"### System:\n{system}\n" if system else ""
        return f"{head}### Task:\n{task}\n### Solution:\n"
    if fmt == "chat":
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(
                f"format 'chat' needs a tokenizer with a chat template; {type(tokenizer).__name__} has none "
                f"(use format = \"completion\" in the profile for a base model)"
            )
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": task}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    raise ValueError(f"unknown text format {fmt!r}; use 'completion' or 'chat'")


def render_example(fmt: str, tokenizer: Any, example: Example, system: str | None = None) -> tuple[str, str]:
    """(prompt text, completion text); the completion ends with the tokenizer's eos token."""
    eos = tokenizer.eos_token
    if not eos:
        raise ValueError(f"{type(tokenizer).__name__} has no eos token; completions could never end")
    return render_prompt(fmt, tokenizer, example.prompt, system), example.completion + eos


def encode_prompt(fmt: str, tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of a rendered prompt.

    A chat template already writes the begin-of-text token, so special tokens are
    added only in the completion format (where the tokenizer adds BOS if it has one).
    """
    return list(tokenizer(prompt, add_special_tokens=(fmt == "completion"))["input_ids"])


def encode_completion(tokenizer: Any, completion: str) -> list[int]:
    """Token ids of a completion; a trailing eos token text becomes exactly the eos id."""
    eos = tokenizer.eos_token
    ends = bool(eos) and completion.endswith(eos)
    body = completion[: -len(eos)] if ends else completion
    ids = list(tokenizer(body, add_special_tokens=False)["input_ids"]) if body else []
    return ids + [tokenizer.eos_token_id] if ends else ids
