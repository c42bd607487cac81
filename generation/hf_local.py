"""Local transformers models: a model folder, a GGUF file, or a training checkpoint.

Batched generation: prompts sorted by length, left padding, the KV cache, and batches bounded by
a token budget so memory stays bounded. Stops on EOS and on the end-of-turn token. The
repetition penalty applies to generated tokens only, as in the paper. A batch of one (a person
waiting on one answer) goes through generation.lean where the model is one it runs: the same
tokens as ``generate``, about a quarter less time a token on the bundled model."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper
from transformers.generation.streamers import BaseStreamer

from generation import lean
from generation.chat import END_OF_TURN_TOKENS, ensure_chat_template, fit_to_context
from generation.config import SamplingConfig
from generation.types import GenerationRequest, GenerationResult

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_MAX_BATCH_TOKENS = 16 * 4096


def configure_threads(fresh: bool = False) -> int:
    """Use the cores this process may run on, less those other processes keep busy right now
    (GENERATION_THREADS overrides). With one of two cores busy elsewhere, torch's two threads
    wait on each other: training ran at 67 tokens/s with two threads and 140 with one (234 with
    two on a quiet machine); the demo's training stage took over half an hour instead of three
    minutes."""
    global _threads
    wanted = os.environ.get("GENERATION_THREADS")
    if wanted:
        n = int(wanted)
    elif _threads is not None and not fresh:
        n = _threads  # measured once a process: a backend made again does not wait to measure
    else:
        n = _threads = max(1, len(os.sched_getaffinity(0)) - round(busy_elsewhere()))
    torch.set_num_threads(max(1, n))
    return max(1, n)


_threads: int | None = None


def busy_elsewhere(seconds: float = 0.3) -> float:
    """Cores' worth of CPU that other processes use now: the machine's busy time over a short
    window (/proc/stat) less this process's own; 0 where /proc/stat cannot be read."""

    def busy_ticks() -> int:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:9]]
        return sum(values) - values[3] - values[4]  # all but idle and iowait

    try:
        before, own_before, started = busy_ticks(), os.times(), time.monotonic()
        time.sleep(seconds)
        after, own_after, ended = busy_ticks(), os.times(), time.monotonic()
    except (OSError, ValueError, IndexError):
        return 0.0
    busy = (after - before) / os.sysconf("SC_CLK_TCK")
    own = own_after.user + own_after.system - own_before.user - own_before.system
    return max(busy - own, 0.0) / max(ended - started, 1e-6)


class GeneratedTokensRepetitionPenalty(LogitsProcessor):
    """CTRL-style repetition penalty on tokens generated so far (not on the prompt's tokens).
    With left padding every row's prompt ends at the same column, so the generated part is
    input_ids[:, prompt_length:]."""

    def __init__(self, penalty: float, prompt_length: int):
        self.penalty = penalty
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length :]
        if generated.shape[1] == 0 or self.penalty == 1.0:
            return scores
        picked = torch.gather(scores, 1, generated)
        picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        return scores.scatter(1, generated, picked)  # type: ignore[return-value]


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    device: torch.device
    context_length: int
    stop_ids: list[int]
    # the one-row decoder (generation.lean), made on first use; None: not made yet
    lean_decoder: lean.LeanLlama | None = None
    lean_checked: bool = False
    lean_lock: threading.Lock = field(default_factory=threading.Lock)
    # a GGUF model loaded in float32 whose one-row answers run on its int4 form (config
    # "one_row_weights": "int4"): the model's folder and file, and that decoder once made
    int4_source: tuple[str, str | None] | None = None
    int4_decoder: lean.LeanLlama | None = None
    int4_checked: bool = False

    def one_row_decoder(self, same_weights: bool = False) -> lean.LeanLlama | None:
        """The lean decoder for one answer at a time, or None where it does not run this model (or
        is turned off). Where the config asks for it, the decoder runs the model's int4 form (the
        GGUF file's own 4-bit grid; loaded on first use, 130 MiB more for the bundled model): on a
        CPU without bfloat16 arithmetic a float32 step reads 540 MB of weights for the bundled
        model, and one answer is 1.9x faster at int4, while batches stay faster in float32
        (docs/design.md).
        ``same_weights``: a decoder of this very model, whose cache can move into the batched
        model's (serve_openai's decode loop)."""
        with self.lean_lock:
            if not self.lean_checked:
                self.lean_checked = True
                if lean.enabled() and lean.LeanLlama.supports(self.model):
                    self.lean_decoder = lean.LeanLlama(self.model)
            if same_weights or self.int4_source is None or self.lean_decoder is None:
                return self.lean_decoder
            if not self.int4_checked:
                self.int4_checked = True
                from generation.quantized import QuantizationError, load_int4

                try:
                    model, _ = load_int4(*self.int4_source)
                except QuantizationError:
                    log.exception("the int4 form of %s could not be made; one answer runs in float32", self.int4_source)
                else:
                    if lean.LeanLlama.supports(model):
                        self.int4_decoder = lean.LeanLlama(model)
            return self.int4_decoder or self.lean_decoder


def _decoder_name(lm: LoadedModel, decoder: lean.LeanLlama | None) -> str:
    """What made an answer: transformers' generate, the lean decoder, or the lean decoder on the
    model's int4 form."""
    if decoder is None:
        return "generate"
    return "lean-int4" if decoder is lm.int4_decoder else "lean"


def resolve_model_files(config: dict[str, Any]) -> tuple[str, str | None]:
    path = Path(config["model_path"]).expanduser()
    if path.is_file():  # a .gguf file given directly
        return str(path.parent), path.name
    return str(path), config.get("gguf_file")


def stop_token_ids(tokenizer: Any, model: Any) -> list[int]:
    ids: set[int] = set()
    for source in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, list):
            ids.update(i for i in source if isinstance(i, int))
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    return sorted(ids)


def load(config: dict[str, Any]) -> LoadedModel:
    folder, gguf_file = resolve_model_files(config)
    device = torch.device(config.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype_name = config.get("dtype") or ("bfloat16" if device.type == "cuda" else "float32")
    dtype = getattr(torch, dtype_name) if dtype_name != "auto" else "auto"
    if config.get("weights") == "int4" and device.type == "cpu":
        from generation.quantized import load_int4

        model, tokenizer = load_int4(folder, gguf_file)
    else:  # on a GPU the weights stay in dtype: int4 is this CPU kernel's form
        kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kwargs).to(device)  # type: ignore[arg-type]
        model.eval()
    ensure_chat_template(tokenizer)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    context = getattr(model.config, "max_position_embeddings", None) or 2048
    loaded = LoadedModel(model, tokenizer, device, int(context), stop_token_ids(tokenizer, model))
    if config.get("one_row_weights") == "int4" and device.type == "cpu" and config.get("weights") != "int4":
        loaded.int4_source = (folder, gguf_file)
    return loaded


_cache_lock = threading.Lock()
_cache: dict[tuple, LoadedModel] = {}


def load_cached(config: dict[str, Any]) -> LoadedModel:
    """A worker keeps the last model it loaded: consecutive jobs on one system load it once."""
    key = tuple(config.get(k) for k in ("model_path", "gguf_file", "dtype", "device", "weights", "one_row_weights"))
    with _cache_lock:
        if key not in _cache:
            _cache.clear()
            _cache[key] = load(config)
        return _cache[key]


@dataclass
class _Item:
    request: GenerationRequest
    input_ids: list[int]
    note: str


def plan_batches(
    lengths: Sequence[int], max_new_tokens: int, max_batch_size: int, max_batch_tokens: int
) -> list[list[int]]:
    """Group indices sorted by length so padding is small; each batch holds at most
    max_batch_size prompts and (longest prompt + max_new_tokens) * size <= max_batch_tokens
    (a single prompt always gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max([lengths[j] for j in current] + [lengths[i]])
        if current and (
            len(current) + 1 > max_batch_size or (longest + max_new_tokens) * (len(current) + 1) > max_batch_tokens
        ):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def left_padded(prompts: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask for prompts of several lengths, padded on the left so that
    every prompt ends at the last column (where the next token is read)."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        attention[row, width - len(prompt) :] = 1
    return input_ids, attention


class _TextStreamer(BaseStreamer):
    """transformers' streamer for one answer: ``generate`` hands it the prompt, then each new token;
    the tokens so far are decoded (up to a stop token) and handed on whenever the text grows."""

    def __init__(self, loaded: LoadedModel, on_text: Callable[[str], None]):
        self.loaded, self.on_text = loaded, on_text
        self.prompt_seen, self.stopped, self.text = False, False, ""
        self.tokens: list[int] = []

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # the first call is the prompt
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            if self.stopped or token in self.loaded.stop_ids:
                self.stopped = True
                return
            self.tokens.append(token)
        text = self.loaded.tokenizer.decode(self.tokens, skip_special_tokens=True).strip()
        if text != self.text and not text.endswith("\ufffd"):  # a character's bytes split over tokens: wait
            self.text = text
            self.on_text(text)

    def end(self) -> None:
        pass


class HFLocalBackend:
    def __init__(self, config: dict[str, Any], loaded: LoadedModel | None = None):
        configure_threads()
        self.config = config
        self.loaded = loaded or load_cached(config)
        self.max_batch_size = config.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE)
        self.max_batch_tokens = config.get("max_batch_tokens", DEFAULT_MAX_BATCH_TOKENS)

    @property
    def preferred_chunk(self) -> int:
        return self.max_batch_size * 4

    def prepare(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[_Item]:
        budget = max(1, self.loaded.context_length - sampling.max_new_tokens)
        items = []
        for request in requests:
            if request.text is not None:  # a raw text to continue: its oldest tokens go first
                ids = self.loaded.tokenizer(request.text, add_special_tokens=False)["input_ids"] or [
                    self.loaded.tokenizer.eos_token_id
                ]
                note = f"the prompt lost its first {len(ids) - budget} tokens to fit" if len(ids) > budget else ""
                items.append(_Item(request, ids[-budget:], note))
                continue
            fitted = fit_to_context(self.loaded.tokenizer, request.messages, budget)
            items.append(_Item(request, fitted.input_ids, fitted.note))
        return items

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> Iterator[GenerationResult]:
        """Yield one result per request, batch by batch (shortest prompts first)."""
        items = self.prepare(requests, sampling)
        max_new = min(sampling.max_new_tokens, self.loaded.context_length - 1)
        batches = plan_batches([len(i.input_ids) for i in items], max_new, self.max_batch_size, self.max_batch_tokens)
        for batch_no, batch in enumerate(batches):
            # a job's answers, in whatever chunks it asks for them (one prompt included), all run on
            # the model's own weights; only stream_one (one answer a person waits for) may not
            yield from self._generate_batch([items[i] for i in batch], sampling, max_new, batch_no)

    def stream_one(
        self, request: GenerationRequest, sampling: SamplingConfig, on_text: Callable[[str], None]
    ) -> GenerationResult:
        """One answer, its text handed to ``on_text`` after every decoding step that adds to it: the
        chat's and the arena's, which a person waits for, on the one-answer form where the config
        names one (``one_row_weights``)."""
        [item] = self.prepare([request], sampling)
        max_new = min(sampling.max_new_tokens, self.loaded.context_length - 1)
        [result] = list(
            self._generate_batch([item], sampling, max_new, 0, _TextStreamer(self.loaded, on_text), alone=True)
        )
        return result

    def _generate_batch(
        self,
        items: list[_Item],
        sampling: SamplingConfig,
        max_new: int,
        batch_no: int,
        streamer: BaseStreamer | None = None,
        alone: bool = False,
    ) -> Iterator[GenerationResult]:
        lm = self.loaded
        pad = lm.tokenizer.pad_token_id
        input_ids, attention = left_padded([i.input_ids for i in items], pad)
        width = input_ids.shape[1]
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "eos_token_id": lm.stop_ids or None,
            "pad_token_id": pad,
            "logits_processor": LogitsProcessorList(
                [GeneratedTokensRepetitionPenalty(sampling.repetition_penalty, width)]
            ),
        }
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed + 7919 * batch_no + items[0].request.sample_index)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        decoder = lm.one_row_decoder(same_weights=not alone) if len(items) == 1 else None
        started = time.monotonic()
        if decoder is not None:
            new_tokens = [self._lean_generate(decoder, items[0].input_ids, sampling, max_new, streamer)]
        else:
            with torch.inference_mode():
                output = lm.model.generate(
                    input_ids=input_ids.to(lm.device),
                    attention_mask=attention.to(lm.device),
                    streamer=streamer,
                    **kwargs,
                )
            new_tokens = output[:, width:].tolist()
        elapsed = time.monotonic() - started
        stop = set(lm.stop_ids)
        for item, tokens in zip(items, new_tokens, strict=True):
            end = next((k for k, t in enumerate(tokens) if t in stop), None)
            kept = tokens if end is None else tokens[:end]
            yield GenerationResult(
                key=item.request.key,
                text=lm.tokenizer.decode(kept, skip_special_tokens=True).strip(),
                prompt_tokens=len(item.input_ids),
                completion_tokens=len(kept),
                latency_seconds=elapsed,
                finish_reason="stop" if end is not None else "length",
                notes=item.note,
                metadata={"batch_size": len(items), "decoder": _decoder_name(lm, decoder)},
            )

    def _lean_generate(
        self,
        decoder: lean.LeanLlama,
        prompt: list[int],
        sampling: SamplingConfig,
        max_new: int,
        streamer: BaseStreamer | None,
    ) -> list[int]:
        """One row through the lean decoder, with what ``generate`` would apply to its logits in
        the order it applies them: the repetition penalty on generated tokens, then (sampling)
        temperature and top-p; the streamer hears the prompt, then each token."""
        width = len(prompt)
        processors: list[Any] = [GeneratedTokensRepetitionPenalty(sampling.repetition_penalty, width)]
        sample = sampling.temperature > 0
        if sample:
            if sampling.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(sampling.temperature))
            if sampling.top_p < 1.0:
                processors.append(TopPLogitsWarper(top_p=sampling.top_p, min_tokens_to_keep=1))
        on_token = None
        if streamer is not None:
            streamer.put(torch.tensor([prompt]))
            on_token = lambda token: streamer.put(torch.tensor([token]))  # noqa: E731
        tokens = decoder.generate(prompt, max_new, self.loaded.stop_ids, processors, sample, on_token)
        if streamer is not None:
            streamer.end()
        return tokens

    def _next_token(self, request: GenerationRequest) -> tuple[torch.Tensor, int]:
        """Log probabilities of the next token after the prompt: one forward pass, no generation."""
        sampling = SamplingConfig(temperature=0.0, repetition_penalty=1.0, max_new_tokens=1)
        item = self.prepare([request], sampling)[0]
        lm = self.loaded
        with torch.inference_mode():
            # the last position's logits only: the output layer over the whole prompt is a fifth of
            # a long prompt's prefill (and its float logits hundreds of MB)
            ids = torch.tensor([item.input_ids], device=lm.device)
            logits = lm.model(input_ids=ids, logits_to_keep=1).logits[0, -1]
        return torch.log_softmax(logits.float(), dim=-1), len(item.input_ids)

    def next_token_logprobs(self, request: GenerationRequest, k: int) -> tuple[list[tuple[str, float]], int]:
        """The k most probable next tokens (as text, with their log probabilities), and the
        prompt's length."""
        logprobs, length = self._next_token(request)
        values, ids = torch.topk(logprobs, max(1, min(k, logprobs.shape[-1])))
        tokens = [self.loaded.tokenizer.decode([i]) for i in ids.tolist()]
        return list(zip(tokens, values.tolist(), strict=True)), length

    def label_logprobs(self, request: GenerationRequest, labels: Sequence[str]) -> tuple[list[tuple[str, float]], int]:
        """The next-token log probability of each label (its first token, with or without a
        leading space, whichever the model prefers): a verdict that cannot fail to be read."""
        return self.batch_label_logprobs([request], labels)[0]

    def batch_label_logprobs(
        self, requests: Sequence[GenerationRequest], labels: Sequence[str]
    ) -> list[tuple[list[tuple[str, float]], int]]:
        """label_logprobs for several prompts in one forward pass: left-padded, with the position
        ids a padded row needs (a plain forward, unlike generate, does not derive them)."""
        sampling = SamplingConfig(temperature=0.0, repetition_penalty=1.0, max_new_tokens=1)
        items = self.prepare(requests, sampling)
        lm = self.loaded
        input_ids, attention = left_padded([i.input_ids for i in items], lm.tokenizer.pad_token_id or 0)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = lm.model(
                input_ids=input_ids.to(lm.device),
                attention_mask=attention.to(lm.device),
                position_ids=positions.to(lm.device),
                logits_to_keep=1,
            ).logits[:, -1]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        ids = [self._label_ids(label) for label in labels]

        def row_of(row: int) -> list[tuple[str, float]]:
            pairs = zip(labels, ids, strict=True)
            return [(label, max(float(logprobs[row, i]) for i in label_ids)) for label, label_ids in pairs]

        return [(row_of(row), len(item.input_ids)) for row, item in enumerate(items)]

    def _label_ids(self, label: str) -> set[int]:
        tokenizer = self.loaded.tokenizer
        return {
            encoded[0]
            for variant in (label, " " + label)
            if (encoded := tokenizer(variant, add_special_tokens=False)["input_ids"])
        }

    def close(self) -> None:
        pass
