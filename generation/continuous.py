"""Continuous batching for a local model: what `manage.py serve_openai` generates with.

One thread runs the decoding loop. A request that arrives while others are being answered joins
them between two decoding steps (its prompt is read in one forward pass, its KV cache padded on
the left and stacked under theirs) instead of waiting for their batch to end, and a finished
answer leaves at once (its rows dropped from the cache). Each step hands every answer's text so
far to its caller, so a streamed answer's first words go out as soon as they are made: with
nothing else running, one short prompt's prefill. This is what vLLM and llama.cpp's server do
(iteration-level scheduling, as in Orca, OSDI 2022); the cache here is transformers' own, padded,
not paged.

Per answer: its own sampling settings (greedy, or temperature / top-p with its own seeded
generator), the repetition penalty on its generated tokens only (as hf_local and the paper), its
own token budget, the model's stop tokens and the request's stop sequences (the text before the
first one; a possible beginning of one is held back from the stream until it is known not to be
one). Greedy answers are those hf_local's batched ``generate`` gives (a test compares them).

One thread does all of the model's work. torch's CPU kernels run on OpenMP, which keeps a team of
worker threads for each thread that ran parallel work; with two such teams on two cores its
workers are throttled to sleep almost at once between the many small kernels of a decoding step,
and a step took 16 ms instead of 10 (the lean decoder, bundled model, int4; measured here). So the
loop thread runs everything that touches the model, other work included (``call``: the server's
label scores and next-token probabilities), builds the lean decoder itself, and a server loads its
model in a thread that ends before the loop starts (generation.model_thread.made_apart), taking
its team with it.

The README's Performance section has the measured figures (bench/serving.py)."""

from __future__ import annotations

import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import torch
import torch.nn.functional as F
from transformers import DynamicCache, TemperatureLogitsWarper, TopPLogitsWarper

from generation.config import SamplingConfig
from generation.hf_local import GeneratedTokensRepetitionPenalty, left_padded
from generation.types import GenerationRequest, GenerationResult

log = logging.getLogger(__name__)

DONE = None  # put on a stream's queue after its last text


@dataclass(eq=False)
class Stream:
    """One answer in the loop. ``events`` receives the answer's visible text so far each time it
    grows, then ``DONE``; ``result()`` is the whole answer once ``done`` is set."""

    request: GenerationRequest
    sampling: SamplingConfig
    input_ids: list[int]
    max_new: int
    stop: tuple[str, ...] = ()
    note: str = ""
    generator: torch.Generator | None = None
    tokens: list[int] = field(default_factory=list)
    text: str = ""  # the answer so far (up to a stop sequence)
    shown: str = ""  # what has been handed to events: never a stop sequence's possible beginning
    finish: str = ""  # stop, length, error, cancelled
    error: str = ""
    batch_size: int = 1  # the most answers it shared a decoding step with
    cancelled: bool = False  # the caller went away: dropped at the next step
    events: queue.Queue = field(default_factory=queue.Queue)
    done: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    first_token_s: float | None = None  # from arrival to the first token
    lean_steps: int = 0  # decoding steps it took alone, through generation.lean

    def result(self) -> GenerationResult:
        return GenerationResult(
            key=self.request.key,
            text=self.text,
            prompt_tokens=len(self.input_ids),
            completion_tokens=len(self.tokens),
            latency_seconds=time.monotonic() - self.started,
            finish_reason="error" if self.error else self.finish,
            error=self.error,
            notes=self.note,
            metadata={
                "batch_size": self.batch_size,
                "first_token_s": self.first_token_s,
                "lean_steps": self.lean_steps,
            },
        )

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(eq=False)
class _Call:
    """Work for the loop thread between two steps (``DecodeLoop.call``)."""

    work: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


def held_back(text: str, stop: tuple[str, ...]) -> int:
    """How many characters at the end of ``text`` could be the beginning of a stop sequence."""
    longest = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:n]):
                longest = n
                break
    return longest


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if not missing:
        return tensor
    pad = [0, 0] * (tensor.dim() - 1 - dim) + [missing, 0]
    return F.pad(tensor, pad)


def _cache_of(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    cache = DynamicCache()
    for layer, (keys, values) in enumerate(pairs):
        cache.update(keys, values, layer)
    return cache


def _forward(model: Any, cache: DynamicCache, **inputs: Any) -> tuple[torch.Tensor, DynamicCache]:
    """The last position's logits and the grown cache (transformers 5.x named the cache argument
    ``past_key_values`` until 5.2x, ``cache`` since)."""
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = model(**inputs, **{name: cache}, use_cache=True)
    grown = out["cache"] if "cache" in out else out["past_key_values"]
    return out.logits[:, -1], grown


def _pairs(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    layers: list[Any] = list(cache.layers)  # a plain model's layers: keys and values, (rows, heads, width, dim)
    return [(layer.keys, layer.values) for layer in layers]


class DecodeLoop:
    """The decoding loop over ``backend`` (an HFLocalBackend: its loaded model and its prompt
    preparation). ``lock`` is held for each forward pass, so other users of the model (the
    server's label scores) run between steps. At most ``max_batch`` answers decode together; when
    the loop is idle, the first arrival waits ``window`` seconds for company."""

    def __init__(self, backend: Any, lock: threading.Lock, max_batch: int = 16, window: float = 0.01):
        self.backend, self.lock, self.max_batch, self.window = backend, lock, max_batch, window
        self.loaded = backend.loaded
        self.arrivals: queue.Queue[Stream | _Call] = queue.Queue()
        self.rows: list[Stream] = []
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros((0, 0), dtype=torch.long)  # (rows, cache width): 1 where a token is
        self.last = torch.zeros(0, dtype=torch.long)  # each row's token to feed at the next step
        self.stop_ids = set(self.loaded.stop_ids)
        # a lone answer decodes through generation.lean (the same tokens, less time a step) in a
        # cache of its own; it goes back into a DynamicCache the moment another answer joins. Made
        # by the loop thread itself (re-packing weights is parallel work: see the module's notes)
        self.lean: Any = None
        self.lean_cache: list[torch.Tensor] | None = None
        threading.Thread(target=self._run, name="decode-loop", daemon=True).start()

    def submit(
        self, request: GenerationRequest, sampling: SamplingConfig, stop: tuple[str, ...] = (), fit: bool = False
    ) -> Stream:
        """Queue one answer; read its ``events`` or wait on ``done``. With ``fit`` (no limit was
        asked for) the prompt keeps all it can of the context and the answer has the rest, up to
        ``sampling.max_new_tokens``; else the prompt is cut to leave room for that many."""
        [item] = self.backend.prepare([request], replace(sampling, max_new_tokens=1) if fit else sampling)
        room = self.loaded.context_length - len(item.input_ids)
        generator = None
        if sampling.temperature > 0:
            generator = torch.Generator()
            seed = sampling.seed if sampling.seed is not None else int(torch.randint(0, 2**31, (1,)))
            generator.manual_seed(seed + request.sample_index)
        stream = Stream(
            request,
            sampling,
            item.input_ids,
            max(1, min(sampling.max_new_tokens, room)),
            tuple(s for s in stop if s),
            item.note,
            generator,
        )
        self.arrivals.put(stream)
        return stream

    def generate(self, request: GenerationRequest, sampling: SamplingConfig, stop: tuple[str, ...] = ()):
        stream = self.submit(request, sampling, stop)
        stream.done.wait()
        return stream.result()

    def call(self, work: Callable[[], Any]) -> Any:
        """``work()`` done by the loop thread between two decoding steps (so the model's every use
        is on one thread); returns its result or raises its error."""
        call = _Call(work)
        self.arrivals.put(call)
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    # the loop

    def _run(self) -> None:
        with torch.inference_mode():  # the thread's every tensor: the cache is edited in place
            try:
                self.lean = self.loaded.one_row_decoder(same_weights=True)  # its cache moves into the batch's
            except Exception:  # noqa: BLE001  (without it, every answer goes through the batched path)
                log.exception("the lean decoder could not be made")
            self._serve()

    def _serve(self) -> None:
        while True:
            try:
                self._admit(block=not self.rows)
                if self.rows:
                    self._step()
            except Exception as exc:  # noqa: BLE001  (a failed step fails its answers, not the server)
                log.exception("decoding step failed")
                for row in self.rows:
                    self._finish(row, error=f"generation failed: {exc}")
                self.rows, self.cache, self.lean_cache = [], None, None

    def _admit(self, block: bool) -> None:
        new: list[Stream | _Call] = []
        if block:
            first = self.arrivals.get()
            if isinstance(first, _Call):
                self._do(first)
                return
            new.append(first)
            deadline = time.monotonic() + self.window
            while len(new) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                try:
                    new.append(self.arrivals.get(timeout=left))
                except queue.Empty:
                    break
        while len(self.rows) + len(new) < self.max_batch:
            try:
                new.append(self.arrivals.get_nowait())
            except queue.Empty:
                break
        for item in new:
            if isinstance(item, _Call):
                self._do(item)
        streams = [s for s in new if isinstance(s, Stream) and not s.cancelled]
        if not streams:
            return
        try:
            logits, cache, mask = self._prefill(streams)
        except Exception as exc:  # noqa: BLE001  (a prompt the model cannot read fails alone)
            log.exception("prefill failed")
            for row in streams:
                self._finish(row, error=f"generation failed: {exc}")
            return
        firsts = self._sample(streams, logits)
        self._stack(streams, cache, mask, firsts)
        for row, token in zip(streams, firsts.tolist(), strict=True):
            self._take(row, token)
        self._drop_finished()

    def _do(self, call: _Call) -> None:
        try:
            with self.lock:
                call.result = call.work()
        except BaseException as exc:  # noqa: BLE001  (handed to the caller)
            call.error = exc
        call.done.set()

    def _prefill(self, new: list[Stream]) -> tuple[torch.Tensor, DynamicCache, torch.Tensor]:
        lm = self.loaded
        ids, mask = left_padded([s.input_ids for s in new], lm.tokenizer.pad_token_id or 0)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with self.lock:
            logits, cache = _forward(
                lm.model,
                DynamicCache(),
                input_ids=ids.to(lm.device),
                attention_mask=mask.to(lm.device),
                position_ids=positions.to(lm.device),
                logits_to_keep=1,
            )
        return logits, cache, mask

    def _stack(self, new: list[Stream], cache: DynamicCache, mask: torch.Tensor, firsts: torch.Tensor) -> None:
        """The new answers' rows under the running ones, the narrower side padded on the left."""
        if not self.rows:
            self.rows, self.cache, self.mask, self.last = list(new), cache, mask, firsts
            self.lean_cache = None
            return
        self._dynamic()
        assert self.cache is not None  # running rows have a cache: the batch's, or the lone row's moved back
        width = max(self.mask.shape[1], mask.shape[1])
        pairs = [
            (
                torch.cat([_pad_left(k, width, 2), _pad_left(k2, width, 2)]),
                torch.cat([_pad_left(v, width, 2), _pad_left(v2, width, 2)]),
            )
            for (k, v), (k2, v2) in zip(_pairs(self.cache), _pairs(cache), strict=True)
        ]
        self.cache = _cache_of(pairs)
        self.mask = torch.cat([_pad_left(self.mask, width, 1), _pad_left(mask, width, 1)])
        self.last = torch.cat([self.last, firsts])
        self.rows += new

    def _step(self) -> None:
        if len(self.rows) == 1 and self.lean is not None and bool(self.mask.all()):
            self._lean_step()
            return
        self._dynamic()
        lm = self.loaded
        size = len(self.rows)
        positions = self.mask.sum(1, keepdim=True)  # each row's real tokens so far: the new one's position
        mask = torch.cat([self.mask, torch.ones((size, 1), dtype=torch.long)], 1)
        with self.lock:
            logits, self.cache = _forward(
                lm.model,
                self.cache,  # type: ignore[arg-type]
                input_ids=self.last.view(size, 1).to(lm.device),
                attention_mask=mask.to(lm.device),
                position_ids=positions.to(lm.device),
                cache_position=torch.tensor([self.mask.shape[1]], device=lm.device),
            )
        self.mask = mask
        tokens = self._sample(self.rows, logits)
        self.last = tokens
        for row, token in zip(self.rows, tokens.tolist(), strict=True):
            row.batch_size = max(row.batch_size, size)
            self._take(row, token)
        self._drop_finished()

    def _lean_step(self) -> None:
        """One step of a lone answer (no padding) through the lean decoder, its keys and values
        moved once from the running DynamicCache into a cache with room for the rest of it."""
        assert self.lean is not None
        row, width = self.rows[0], self.mask.shape[1]
        if self.lean_cache is None or self.lean_cache[0].shape[3] <= width:
            room = width + max(1, row.max_new - len(row.tokens)) + 1
            cache = self.lean.new_cache(room)
            if self.lean_cache is not None:
                pairs = [(kv[0, :, :, :width], kv[1, :, :, :width]) for kv in self.lean_cache]
            else:
                pairs = _pairs(self.cache)  # type: ignore[arg-type]
            for kv, (keys, values) in zip(cache, pairs, strict=True):
                kv[0, :, :, :width] = keys
                kv[1, :, :, :width] = values
            self.lean_cache, self.cache = cache, None
        with self.lock:
            logits = self.lean.forward(self.last.view(1), width, self.lean_cache)[None]
        self.mask = torch.ones((1, width + 1), dtype=torch.long)
        tokens = self._sample(self.rows, logits)
        self.last = tokens
        row.lean_steps += 1
        self._take(row, int(tokens[0]))
        self._drop_finished()

    def _dynamic(self) -> None:
        """The lone answer's lean cache back as the DynamicCache the batched steps grow."""
        if self.lean_cache is None:
            return
        width = self.mask.shape[1]
        self.cache = _cache_of([(kv[0, :, :, :width], kv[1, :, :, :width]) for kv in self.lean_cache])
        self.lean_cache = None

    def _sample(self, rows: list[Stream], logits: torch.Tensor) -> torch.Tensor:
        """Each row's next token, as hf_local's ``generate`` chooses it: the repetition penalty on
        its generated tokens (hf_local's processor), then greedy, or transformers' temperature and
        top-p warpers and a draw with the row's own generator."""
        logits = logits.float().cpu()
        chosen = logits.argmax(-1)
        for i, row in enumerate(rows):
            scores = logits[i : i + 1]
            generated = torch.tensor([row.tokens], dtype=torch.long).reshape(1, -1)
            if row.sampling.repetition_penalty != 1.0 and row.tokens:
                penalty = GeneratedTokensRepetitionPenalty(row.sampling.repetition_penalty, 0)
                scores = penalty(cast(torch.LongTensor, generated), cast(torch.FloatTensor, scores))
                chosen[i] = scores.argmax()
            if row.sampling.temperature > 0:
                scores = TemperatureLogitsWarper(row.sampling.temperature)(generated, scores)
                if row.sampling.top_p < 1.0:
                    scores = TopPLogitsWarper(row.sampling.top_p)(generated, scores)
                chosen[i] = torch.multinomial(torch.softmax(scores[0], -1), 1, generator=row.generator)[0]
        return chosen

    def _take(self, row: Stream, token: int) -> None:
        """One new token of ``row``: its text, whether it ends the answer, what the caller sees."""
        if row.first_token_s is None:
            row.first_token_s = time.monotonic() - row.started
        if row.cancelled:
            row.finish = "cancelled"
            return
        if token in self.stop_ids:
            row.finish = "stop"
        else:
            row.tokens.append(token)
            if len(row.tokens) >= row.max_new:
                row.finish = "length"
        text = self.loaded.tokenizer.decode(row.tokens, skip_special_tokens=True).strip()
        if text.endswith("\ufffd") and not row.finish:  # a character's bytes split over tokens: wait
            return
        ends = [text.index(s) for s in row.stop if s in text]
        if ends:
            text, row.finish = text[: min(ends)], "stop"
        row.text = text
        visible = text if row.finish else text[: len(text) - held_back(text, row.stop)]
        if visible != row.shown and visible.startswith(row.shown):
            row.shown = visible
            row.events.put(visible)

    def _finish(self, row: Stream, error: str = "") -> None:
        row.error = row.error or error
        row.finish = row.finish or "error"
        row.events.put(DONE)
        row.done.set()

    def _drop_finished(self) -> None:
        ended = [i for i, row in enumerate(self.rows) if row.finish or row.cancelled]
        if not ended:
            return
        for i in ended:
            self._finish(self.rows[i])
        keep = [i for i, row in enumerate(self.rows) if not (row.finish or row.cancelled)]
        if not keep:
            self.rows, self.cache, self.lean_cache = [], None, None
            return
        index = torch.tensor(keep)
        mask = self.mask[index]
        first = int((mask.sum(0) > 0).nonzero()[0])  # columns no remaining row uses: dropped
        self.mask = mask[:, first:]
        self.cache = _cache_of([(k[index, :, first:], v[index, :, first:]) for k, v in _pairs(self.cache)])  # type: ignore[arg-type]
        self.last = self.last[index]
        self.rows = [self.rows[i] for i in keep]
