"""The chat format used for training, and label masking.

Every utterance (user and assistant) ends with the recipe's end-of-turn token (docs/paper.md: an EOT
token, not the pre-training EOS, so the model can tell the speakers apart). Only assistant tokens
and their EOT are learned; everything else is IGNORE_INDEX."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from generation.chat import END_OF_TURN_TOKENS
from training.recipe import IGNORE_INDEX

ROLES = ("system", "user", "assistant")


class FormatError(ValueError):
    """A training example that cannot be formatted (bad roles, nothing to learn)."""


def chat_template(eot: str) -> str:
    """ChatML-style headers with ``eot`` closing every utterance (with eot = <|im_end|> this is
    ChatML itself). Saved with the checkpoint, so generation formats prompts the same way."""
    return (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '"
        + eot
        + "' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


def prepare_tokenizer(tokenizer: Any, model: Any, eot: str) -> bool:
    """Give tokenizer and model the EOT token and the training chat template. Returns True when
    the token was new: it is then added as a special token, the embeddings are resized, and the new
    row starts as a copy of the base's own end-of-turn (or EOS) embedding, so an instruct base keeps
    ending its turns."""
    vocab = tokenizer.get_vocab()
    added = eot not in vocab
    if added:
        tokenizer.add_tokens([eot], special_tokens=True)
        old = next((vocab[t] for t in END_OF_TURN_TOKENS if t in vocab), tokenizer.eos_token_id)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=old is None)
        new = tokenizer.convert_tokens_to_ids(eot)
        if old is not None:
            with torch.no_grad():
                inputs = model.get_input_embeddings().weight
                inputs[new] = inputs[old]
                outputs = model.get_output_embeddings()
                if outputs is not None and outputs.weight is not inputs:
                    outputs.weight[new] = outputs.weight[old]
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.chat_template = chat_template(eot)
    eot_id = tokenizer.convert_tokens_to_ids(eot)
    stops = model.generation_config.eos_token_id
    stops = [stops] if isinstance(stops, int) else list(stops or [])
    model.generation_config.eos_token_id = [eot_id] + [s for s in stops if s != eot_id]
    return added


def check_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise FormatError("messages must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise FormatError(f"message {i}: role must be one of {', '.join(ROLES)}")
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            raise FormatError(f"message {i}: content must be non-empty text")
        if message["role"] == "system" and i != 0:
            raise FormatError(f"message {i}: a system message may only come first")
    if messages[-1]["role"] != "assistant":
        raise FormatError("the last message must be the assistant's (the answer to learn)")
    return messages


@dataclass
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    trimmed: bool = False

    @property
    def learned_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_example(tokenizer: Any, messages: list[dict[str, str]], max_length: int, eot: str) -> EncodedExample:
    """Token ids and labels for one conversation (multi-turn chains learn every assistant turn),
    trimmed to max_length tokens. Raises FormatError when nothing is left to learn."""
    check_messages(messages)
    ids = _ids(tokenizer, tokenizer.apply_chat_template(messages, tokenize=False))
    labels = [IGNORE_INDEX] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt_text = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        prompt = _ids(tokenizer, prompt_text)
        answer_end = len(_ids(tokenizer, prompt_text + message["content"] + eot))
        # the masks rely on the prompt tokenising the same alone and inside the whole example
        if ids[: len(prompt)] != prompt or answer_end > len(ids):
            raise FormatError(f"message {i}: the prompt does not tokenise as a prefix of the whole example")
        labels[len(prompt) : answer_end] = ids[len(prompt) : answer_end]
    trimmed = len(ids) > max_length
    encoded = EncodedExample(ids[:max_length], labels[:max_length], trimmed)
    if not encoded.learned_tokens:
        raise FormatError(f"no answer token is left after trimming to {max_length} tokens")
    return encoded
