"""Tiny random Llama models and word-level tokenizers, built in the test (no hub, no download)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from generation.chat import CHATML_TEMPLATE

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
WORDS = (
    "user assistant system hello hi there what why how is the a an sky blue red cat dog tell me joke "
    "about story poem write explain please answer yes no maybe one two three four five six seven eight nine "
    "ten sun moon star tree river bread coffee tea book cold warm happy sad fast slow big small good bad"
).split()


# question/answer pairs in the tiny vocabulary, for training tests
CHAT = [
    ("what is the sky", "the sky is blue"),
    ("tell me a story", "one cat and one dog"),
    ("why is the sun warm", "the sun is a big star"),
    ("write a poem", "moon and star and tree"),
    ("how is the river", "the river is cold and fast"),
    ("tell me a joke", "the cat is a dog"),
]


def make_tokenizer(extra: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS + list(extra))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # split on spaces and newlines, and keep the chat markers as their own tokens
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    backend.add_special_tokens(SPECIALS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def make_model(
    tokenizer, seed: int = 0, layers: int = 2, hidden: int = 32, context: int = 256, tie_word_embeddings: bool = False
) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie_word_embeddings,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def save_tiny(folder: Path, seed: int = 0, extra: tuple[str, ...] = (), **kwargs) -> Path:
    tokenizer = make_tokenizer(extra)
    model = make_model(tokenizer, seed=seed, **kwargs)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def memorise(model, tokenizer, examples, steps: int = 150) -> None:
    """Train the model until it answers each (messages, answer token ids) pair exactly."""
    batch = []
    for messages, answer_tokens in examples:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + answer_tokens])
        labels = ids.clone()
        labels[0, : len(prompt_ids)] = -100
        batch.append((ids, labels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        for ids, labels in batch:
            model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
