"""Chat formatting: the tokenizer's chat template (ChatML when it has none), and trimming a
conversation from the left of its history so it fits the model's context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# SmolLM2, Qwen and many others use ChatML; it is our fallback for tokenizers without a template.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<EOT>", "<end_of_turn>")


def alternating(turns: list[str]) -> list[dict[str, str]]:
    """A list of utterances as messages: user, assistant, user, ... (LIMA's `conversations`)."""
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def ensure_chat_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE


def render(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass
class FittedPrompt:
    input_ids: list[int]
    note: str = ""


def fit_to_context(tokenizer: Any, messages: list[dict[str, str]], max_input_tokens: int) -> FittedPrompt:
    """Render messages; if too long, drop the oldest turns (keeping a system message and the last
    user turn), and as a last resort cut the start of what is left. The note says what was cut."""
    ids = render(tokenizer, messages)
    if len(ids) <= max_input_tokens:
        return FittedPrompt(ids)
    system = [m for m in messages[:1] if m["role"] == "system"]
    history = messages[len(system) :]
    dropped = 0
    while len(history) > 1:
        history = history[1:]
        dropped += 1
        if history[0]["role"] != "user":
            continue  # a conversation restarts at a user turn
        ids = render(tokenizer, system + history)
        if len(ids) <= max_input_tokens:
            return FittedPrompt(ids, f"trimmed: dropped the {dropped} oldest message(s) to fit the context")
    ids = render(tokenizer, system + history)
    cut = len(ids) - max_input_tokens
    note = f"trimmed: dropped the {dropped} oldest message(s) and the first {cut} tokens to fit the context"
    return FittedPrompt(ids[cut:], note)
