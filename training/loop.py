"""Fine-tuning with the recipe: one plain loop over accelerate (so the same code runs on a CPU, one
GPU, or many GPUs and hosts under ``accelerate launch`` with FSDP), a checkpoint every epoch, and
resuming from the last one after a kill.

A run folder holds ``data.jsonl`` (the examples, frozen at the start), ``recipe.json``,
``epoch-NN/`` (a model you can load with from_pretrained, with its tokenizer, recipe.json and
metrics.json) and ``resume/`` (optimiser, scheduler, step and RNG states of the latest epoch)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, set_seed
from torch.utils.checkpoint import checkpoint
from transformers import AutoModelForCausalLM, AutoTokenizer

from generation.hf_local import configure_threads
from training.batching import collate, length_grouped_batches, random_batches
from training.dropout import apply_residual_dropout
from training.formatting import EncodedExample, FormatError, encode_example, prepare_tokenizer
from training.recipe import IGNORE_INDEX, Recipe
from training.schedule import lima_lr_factor


@dataclass
class StepReport:
    step: int
    total_steps: int
    epoch: int  # 1-based epoch this step belongs to
    loss: float  # mean loss per learned token in this step
    lr: float
    tokens: int  # real (non-padding) tokens processed so far in this attempt
    tokens_per_second: float


@dataclass
class CheckpointReport:
    epoch: int
    step: int
    path: Path
    train_loss: float  # mean per-token loss over the epoch


@dataclass
class HeldoutReport:
    epoch: int  # 0: the base model before any step
    loss: float  # mean loss per learned token over the held-out examples, dropout off
    examples: int


@dataclass
class Callbacks:
    """What a caller (a Celery job, the CLI's progress bar) hears; raising from one stops training."""

    on_step: Callable[[StepReport], None] = lambda report: None
    on_checkpoint: Callable[[CheckpointReport], None] = lambda report: None
    on_status: Callable[[str], None] = lambda message: None
    on_heldout: Callable[[HeldoutReport], None] = lambda report: None


@dataclass
class RunOutcome:
    checkpoints: list[CheckpointReport] = field(default_factory=list)
    resumed_from_epoch: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0


def epoch_dir(run_dir: Path, epoch: int) -> Path:
    return run_dir / f"epoch-{epoch:02d}"


def write_examples(run_dir: Path, examples: list[dict[str, Any]]) -> Path:
    """Freeze the examples a run trains on (written once; a resumed run reads the same file)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "data.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as out:
            for example in examples:
                out.write(json.dumps(example) + "\n")
        os.replace(tmp, path)
    return path


def read_examples(run_dir: Path) -> list[dict[str, Any]]:
    with (run_dir / "data.jsonl").open() as lines:
        return [json.loads(line) for line in lines if line.strip()]


def load_base(base: dict[str, Any]) -> tuple[Any, Any]:
    """Tokenizer and float32 model from a folder (with an optional GGUF file in it)."""
    kwargs = {"gguf_file": base["gguf_file"]} if base.get("gguf_file") else {}
    tokenizer = AutoTokenizer.from_pretrained(base["model_path"], **kwargs)
    model = AutoModelForCausalLM.from_pretrained(base["model_path"], dtype=torch.float32, **kwargs)
    if base.get("gguf_file"):
        # GGUF weights are de-quantized to float32 on load; only the marker says "quantized", and it
        # would stop save_pretrained. The fine-tuned model is a plain float32 model.
        model.hf_quantizer = None  # type: ignore[assignment]
        model.is_quantized = False  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return tokenizer, model


def split_heldout(examples: list[dict[str, Any]], recipe: Recipe) -> tuple[list[dict], list[dict]]:
    """(trained on, held out): ``recipe.heldout_examples`` chosen by the seed, at most a fifth of
    the examples, a pure function of the frozen data.jsonl (a resumed run holds out the same)."""
    wanted = min(recipe.heldout_examples, len(examples) // 5)
    if not wanted:
        return examples, []
    held = set(random.Random(recipe.seed).sample(range(len(examples)), wanted))
    return [e for n, e in enumerate(examples) if n not in held], [e for n, e in enumerate(examples) if n in held]


def encode_all(
    tokenizer: Any, examples: list[dict[str, Any]], recipe: Recipe
) -> tuple[list[EncodedExample], list[str]]:
    encoded, skipped = [], []
    for n, example in enumerate(examples):
        try:
            encoded.append(encode_example(tokenizer, example["messages"], recipe.max_length, recipe.eot_token))
        except FormatError as exc:
            skipped.append(f"{example.get('id', n)}: {exc}")
    return encoded, skipped


def epoch_batches(lengths: list[int], recipe: Recipe, epoch: int) -> list[list[int]]:
    """The micro batches of one epoch, a pure function of (seed, epoch): a resumed run replays
    exactly the order an uninterrupted one would have used."""
    rng = random.Random(recipe.seed * 1000 + epoch)
    make = length_grouped_batches if recipe.group_by_length else random_batches
    return make(lengths, recipe.micro_batch_size, rng)


def steps_per_epoch(examples: int, recipe: Recipe, processes: int = 1) -> int:
    micro = math.ceil(examples / recipe.micro_batch_size)
    per_process = math.ceil(micro / processes)
    return math.ceil(per_process / recipe.accumulation_steps(processes))


def _optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    # weight decay on matrices only (not on norms and biases), as nanoGPT and most LLM recipes do
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": recipe.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=(recipe.adam_beta1, recipe.adam_beta2))


def _with_lora(model: Any, recipe: Recipe) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise RuntimeError("lora_r > 0 needs peft: pip install 'lima-eval[lora]'") from None
    config = LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class ResumeRecord:
    """Where a killed run goes on from: one file, resume/checkpoint.pt (nanoGPT keeps one such
    dict), written after the epoch's model folder. The weights are that folder's."""

    epoch: int
    step: int
    optimizer: dict | None  # None under FSDP (sharded): AdamW restarts its moments
    scheduler: dict
    rng: dict

    FILE = "checkpoint.pt"


def load_resume(run_dir: Path) -> ResumeRecord | None:
    folder = run_dir / "resume"
    if (folder / ResumeRecord.FILE).exists():
        return ResumeRecord(**torch.load(folder / ResumeRecord.FILE, weights_only=False))
    if (folder / "state.json").exists():  # written by versions before 2026-12 (two files)
        states = torch.load(folder / "states.pt", weights_only=False)
        return ResumeRecord(**json.loads((folder / "state.json").read_text()), **states)
    return None


def saved_checkpoints(run_dir: Path, up_to_epoch: int) -> list[CheckpointReport]:
    """The complete checkpoint folders of epochs 1..``up_to_epoch`` (renamed into place, so a
    folder with its metrics.json is whole), as the reports that announced them."""
    reports = []
    for epoch in range(1, up_to_epoch + 1):
        metrics = epoch_dir(run_dir, epoch) / "metrics.json"
        if metrics.exists():
            saved = json.loads(metrics.read_text())
            reports.append(CheckpointReport(epoch, saved["step"], epoch_dir(run_dir, epoch), saved["train_loss"]))
    return reports


def _save_checkpoint(
    accelerator: Accelerator, model: Any, tokenizer: Any, recipe: Recipe, folder: Path, metrics: dict[str, Any]
) -> None:
    """A loadable model folder, written to a temporary name and renamed (a kill leaves no half
    checkpoint) by the main process. LoRA runs save the merged model, so a checkpoint is always a
    plain model."""
    unwrapped = accelerator.unwrap_model(model)
    lora = hasattr(unwrapped, "merge_and_unload")
    # every process takes part in gathering the weights (FSDP shards them); the main one writes
    state_dict = None if lora else accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        tmp = folder.with_name(folder.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        if lora:
            _save_merged(unwrapped, tmp)
        else:
            unwrapped.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        recipe.save(tmp)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    accelerator.wait_for_everyone()


def _save_merged(peft_model: Any, folder: Path) -> None:
    """A LoRA run's checkpoint: the base's weights with the adapters merged in, as peft's
    ``merge_and_unload`` makes them (weight + B @ A x scale, the same sum), written one tensor at
    a time. peft merges into a copy of the whole model (the adapters stay trainable): 0.5 GB more
    at every save for the bundled model, the demo's peak on a machine short of memory."""
    base = peft_model.get_base_model()
    adapter_parts = {"base_layer", "lora_A", "lora_B", "lora_dropout", "lora_magnitude_vector"}
    # each tensor's name: the tensor (the base layer's weight, for a LoRA layer) and the LoRA layer
    # whose adapters are merged into it when its turn comes
    tensors: dict[str, tuple[torch.Tensor, Any]] = {}
    for name, module in base.named_modules():
        if adapter_parts & set(name.split(".")):
            continue
        if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
            tensors[f"{name}.weight"] = (module.base_layer.weight, module)
            if getattr(module.base_layer, "bias", None) is not None:  # a Linear's; an Embedding has none
                tensors[f"{name}.bias"] = (module.base_layer.bias, None)
            continue
        for key, tensor in module.named_parameters(prefix=name, recurse=False):
            tensors[key] = (tensor, None)
        for key, tensor in module.named_buffers(prefix=name, recurse=False):
            if key.rsplit(".", 1)[-1] not in module._non_persistent_buffers_set:
                tensors[key] = (tensor, None)
    if getattr(base.config, "tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)  # a tied output layer is written once, as the embeddings
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key, (tensor, _) in tensors.items():
        size = tensor.numel() * tensor.element_size()
        header[key] = {
            "dtype": _SAFETENSORS_DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format's 8-byte alignment of the data
    folder.mkdir(parents=True)
    with (folder / "model.safetensors").open("wb") as out, torch.no_grad():
        out.write(len(encoded).to_bytes(8, "little") + encoded)
        for tensor, lora in tensors.values():
            if lora is not None:
                tensor = tensor + lora.get_delta_weight(lora.active_adapters[0])
            out.write(tensor.contiguous().view(-1).view(torch.uint8).numpy().data)
    config = base.config.__class__.from_dict(base.config.to_dict())
    config.architectures = [type(base).__name__]  # as save_pretrained writes them (a test compares)
    config.dtype = str(base.dtype).removeprefix("torch.")
    config.save_pretrained(folder)
    if base.can_generate():
        base.generation_config.save_pretrained(folder)


_SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def _save_resume(accelerator: Accelerator, run_dir: Path, record: ResumeRecord) -> None:
    """The resume record, written by the main process to a temporary folder and renamed."""
    if accelerator.is_main_process:
        tmp = run_dir / "resume.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        fields = {k: getattr(record, k) for k in ("epoch", "step", "optimizer", "scheduler", "rng")}
        torch.save(fields, tmp / ResumeRecord.FILE)
        final = run_dir / "resume"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()


def _micro_batch_loss(model: Any, batch: dict[str, torch.Tensor], learned_in_step: float) -> torch.Tensor:
    """Summed token loss / learned tokens of the whole optimiser step (all processes together):
    every learned token weighs the same whatever micro batch or process it fell in, so gradient
    accumulation and data parallelism stay exact (TRL's ``num_items_in_batch``)."""
    shift_labels = batch["labels"][:, 1:]
    parts = _decoder_and_head(model)
    if parts is None:  # wrapped for several processes: the model's own forward, every position's logits
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        shift_logits = logits[:, :-1, :].float()
        loss = torch.nn.functional.cross_entropy(
            shift_logits.reshape(-1, shift_logits.size(-1)),
            shift_labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        return loss / max(learned_in_step, 1)
    decoder, head = parts
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    hidden = hidden[:, :-1, :].reshape(-1, hidden.size(-1))
    labels = shift_labels.reshape(-1)
    learned = labels != IGNORE_INDEX
    hidden, labels = hidden[learned], labels[learned]
    loss = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, len(labels), LOSS_CHUNK_TOKENS):
        end = start + LOSS_CHUNK_TOKENS
        if torch.is_grad_enabled():
            loss = loss + checkpoint(_chunk_loss, head, hidden[start:end], labels[start:end], use_reentrant=False)
        else:
            loss = loss + _chunk_loss(head, hidden[start:end], labels[start:end])
    return loss / max(learned_in_step, 1)


# The output layer's logits are vocabulary-wide (49,152 for SmolLM2): for a micro batch of 4 x 512
# tokens they are 400 MB in float32, and the loss keeps as much again for the backward pass. Only
# the learned tokens (the answers; LIMA learns no prompt token) get logits, a chunk at a time,
# recomputed in the backward pass. For a micro batch of 4 answers of about 300 tokens of the bundled
# model the live memory at the loss's peak fell from 2.13 to 1.63 GB (glibc's mallinfo2, measured
# around one forward and backward pass).
LOSS_CHUNK_TOKENS = 256


def _chunk_loss(head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(head(hidden).float(), labels, reduction="sum")


def _decoder_and_head(model: Any) -> tuple[Any, torch.nn.Module] | None:
    """The model's decoder (hidden states) and output layer, where they can be called apart: a
    transformers causal LM, with or without LoRA; None for a model wrapped by DDP or FSDP, whose
    own forward must run (it gathers the shards and syncs the gradients)."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel) or type(model).__name__.startswith(
        ("FullyShardedDataParallel", "FSDP")
    ):
        return None
    get_decoder, get_head = getattr(model, "get_decoder", None), getattr(model, "get_output_embeddings", None)
    if get_decoder is None or get_head is None:
        return None
    decoder, head = get_decoder(), get_head()
    if decoder is None or head is None or decoder is model:
        return None
    return decoder, head


def _steps(batches: list[list[int]], accumulation: int) -> Iterator[list[list[int]]]:
    for start in range(0, len(batches), accumulation):
        yield batches[start : start + accumulation]


def make_accelerator(recipe: Recipe) -> Accelerator:
    """accelerate keeps one global state per process; a worker that trains run after run (with
    and without bf16) starts each single-process run from a fresh one. Under ``accelerate launch``
    the launcher's distributed state is kept."""
    state = AcceleratorState._shared_state
    if state and state.get("distributed_type", DistributedType.NO) == DistributedType.NO:
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(mixed_precision="bf16" if recipe.bf16 else "no")


@dataclass
class Session:
    """What one attempt trains with: set up once, then epoch after epoch."""

    accelerator: Accelerator
    recipe: Recipe
    tokenizer: Any
    model: Any
    optimizer: Any
    scheduler: Any
    encoded: list[EncodedExample]
    total_steps: int
    heldout: list[EncodedExample] = field(default_factory=list)
    step: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)  # the first step's clock (after loading)


def train(
    run_dir: Path,
    base: dict[str, Any],
    recipe: Recipe,
    callbacks: Callbacks | None = None,
    accelerator: Accelerator | None = None,
) -> RunOutcome:
    """Train on run_dir/data.jsonl, resuming after the last saved epoch when there is one."""
    started = time.monotonic()
    callbacks = callbacks or Callbacks()
    recipe.validate()
    accelerator = accelerator or make_accelerator(recipe)
    if accelerator.device.type == "cpu" and accelerator.num_processes == 1:
        configure_threads()  # the cores not busy elsewhere: two threads on one free core crawl
    outcome = RunOutcome()
    resume = load_resume(run_dir)
    session = _set_up(run_dir, base, recipe, accelerator, resume, callbacks, outcome)
    if resume:
        outcome.resumed_from_epoch = resume.epoch
        # a kill between saving an epoch and reporting it leaves the folder unreported: report
        # every saved epoch again (reports are idempotent: one checkpoint per epoch)
        for report in saved_checkpoints(run_dir, resume.epoch):
            callbacks.on_checkpoint(report)
        for held in saved_heldout(run_dir, resume.epoch):
            callbacks.on_heldout(held)
    elif session.heldout:
        _measure_heldout(session, run_dir, 0, callbacks)
    for epoch in range((resume.epoch if resume else 0) + 1, recipe.epochs + 1):
        if session.step >= session.total_steps:
            break
        mean_loss = _train_epoch(session, epoch, callbacks)
        if session.heldout:
            _measure_heldout(session, run_dir, epoch, callbacks)
        if epoch % recipe.save_every_epochs == 0 or epoch == recipe.epochs or session.step >= session.total_steps:
            outcome.checkpoints.append(_save_epoch(session, run_dir, base, epoch, mean_loss, callbacks))
    outcome.tokens = session.tokens
    outcome.seconds = time.monotonic() - started
    return outcome


def _set_up(
    run_dir: Path,
    base: dict[str, Any],
    recipe: Recipe,
    accelerator: Accelerator,
    resume: ResumeRecord | None,
    callbacks: Callbacks,
    outcome: RunOutcome,
) -> Session:
    """The model (from the base, or from the epoch a resumed run stopped at), the examples, the
    optimiser and the LIMA schedule, restored to where a resumed run stopped."""
    processes = accelerator.num_processes
    if accelerator.is_main_process:
        recipe.save(run_dir)
    set_seed(recipe.seed)
    callbacks.on_status(f"loading the base model ({processes} process(es))")
    tokenizer, model = load_base(base)
    prepare_tokenizer(tokenizer, model, recipe.eot_token)
    trained_on, held_out = split_heldout(read_examples(run_dir), recipe)
    encoded, outcome.skipped_examples = encode_all(tokenizer, trained_on, recipe)
    if not encoded:
        raise ValueError("no example can be trained on: " + "; ".join(outcome.skipped_examples[:3]))
    heldout, skipped_heldout = encode_all(tokenizer, held_out, recipe)
    outcome.skipped_examples += [f"held out {text}" for text in skipped_heldout]
    if resume:
        callbacks.on_status(f"resuming after epoch {resume.epoch}")
        weights = AutoModelForCausalLM.from_pretrained(epoch_dir(run_dir, resume.epoch), dtype=torch.float32)
        model.load_state_dict(weights.state_dict())
        del weights
    apply_residual_dropout(model, recipe.residual_dropout_top, recipe.residual_dropout_bottom)
    if recipe.gradient_checkpointing:
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
        model.config.use_cache = False
    if recipe.lora_r:
        model = _with_lora(model, recipe)

    total_steps = steps_per_epoch(len(encoded), recipe, processes) * recipe.epochs
    if recipe.max_steps:
        total_steps = min(total_steps, recipe.max_steps)
    # the model first, then its optimiser (FSDP flattens the parameters); the scheduler is not
    # prepared: accelerate's wrapper would step it once per process
    model = accelerator.prepare(model)
    optimizer = accelerator.prepare(_optimizer(model, recipe))
    factor = lima_lr_factor(total_steps, recipe.lr, recipe.final_lr, recipe.warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    session = Session(accelerator, recipe, tokenizer, model, optimizer, scheduler, encoded, total_steps, heldout)
    if resume:
        if resume.optimizer is not None:
            optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
        _set_rng_state(resume.rng)
        session.step = resume.step
    return session


def _global_sum(accelerator: Accelerator, value: float) -> float:
    if accelerator.num_processes == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.reduce(tensor, reduction="sum").item())


def _train_epoch(session: Session, epoch: int, callbacks: Callbacks) -> float:
    """One epoch's optimiser steps (this process's share of its micro batches); returns the
    epoch's mean loss per learned token, over every process."""
    accelerator, recipe, model, encoded = session.accelerator, session.recipe, session.model, session.encoded
    processes = accelerator.num_processes
    model.train()
    batches = epoch_batches([len(e.input_ids) for e in encoded], recipe, epoch)
    if len(batches) % processes:  # every process takes as many steps (repeat a few, as DistributedSampler does)
        batches += batches[: processes - len(batches) % processes]
    batches = batches[accelerator.process_index :: processes]
    epoch_loss, epoch_learned = 0.0, 0.0
    for micro_batches in _steps(batches, recipe.accumulation_steps(processes)):
        if session.step >= session.total_steps:
            break
        # the step's learned tokens over every process: each process's loss is scaled so that
        # the gradients data parallelism averages are those of one big batch
        learned = _global_sum(accelerator, sum(encoded[i].learned_tokens for mb in micro_batches for i in mb))
        step_loss = 0.0
        for n, batch_ids in enumerate(micro_batches):
            pairs = [(encoded[i].input_ids, encoded[i].labels) for i in batch_ids]
            batch = collate(pairs, session.tokenizer.pad_token_id)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            last = n == len(micro_batches) - 1
            context = accelerator.no_sync(model) if not last and processes > 1 else contextlib.nullcontext()
            with context, accelerator.autocast():
                loss = _micro_batch_loss(model, batch, learned) * processes
                accelerator.backward(loss)
            step_loss += loss.item() / processes
            session.tokens += sum(len(encoded[i].input_ids) for i in batch_ids)
        if recipe.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
        lr = float(session.scheduler.get_last_lr()[0])
        session.optimizer.step()
        session.scheduler.step()
        session.optimizer.zero_grad(set_to_none=True)
        session.step += 1
        step_loss = _global_sum(accelerator, step_loss)  # this step's mean loss per learned token
        epoch_loss += step_loss * learned
        epoch_learned += learned
        rate = session.tokens / max(time.monotonic() - session.started, 1e-9)
        callbacks.on_step(StepReport(session.step, session.total_steps, epoch, step_loss, lr, session.tokens, rate))
    return epoch_loss / max(epoch_learned, 1)


HELDOUT_FILE = "heldout.json"


def saved_heldout(run_dir: Path, up_to_epoch: int) -> list[HeldoutReport]:
    """The held-out losses measured up to ``up_to_epoch`` (epoch 0: the base), as reported."""
    path = run_dir / HELDOUT_FILE
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    return [HeldoutReport(**row) for row in saved if row["epoch"] <= up_to_epoch]


@torch.no_grad()
def heldout_loss(session: Session) -> float:
    """Mean loss per learned token over the held-out examples, in eval mode (dropout off), summed
    over every process. Each process runs as many forward passes as the others (a wrapped model's
    forward may be a collective: FSDP gathers shards): the last ones repeat a batch at weight 0."""
    accelerator, model, size = session.accelerator, session.model, session.recipe.micro_batch_size
    processes = accelerator.num_processes
    batches = [
        list(range(start, min(start + size, len(session.heldout)))) for start in range(0, len(session.heldout), size)
    ]
    weights = [1.0] * len(batches)
    while len(batches) % processes:
        batches.append(batches[0])
        weights.append(0.0)
    was_training = model.training
    model.eval()
    total, learned = 0.0, 0.0
    for ids, weight in list(zip(batches, weights, strict=True))[accelerator.process_index :: processes]:
        pairs = [(session.heldout[i].input_ids, session.heldout[i].labels) for i in ids]
        batch = {k: v.to(accelerator.device) for k, v in collate(pairs, session.tokenizer.pad_token_id).items()}
        with accelerator.autocast():
            total += weight * _micro_batch_loss(model, batch, 1.0).item()
        learned += weight * sum(session.heldout[i].learned_tokens for i in ids)
    model.train(was_training)
    return _global_sum(accelerator, total) / max(_global_sum(accelerator, learned), 1.0)


def _measure_heldout(session: Session, run_dir: Path, epoch: int, callbacks: Callbacks) -> None:
    callbacks.on_status(f"held-out loss after epoch {epoch}" if epoch else "held-out loss of the base model")
    report = HeldoutReport(epoch, heldout_loss(session), len(session.heldout))
    if session.accelerator.is_main_process:
        rows = [asdict(r) for r in saved_heldout(run_dir, epoch - 1)] + [asdict(report)]
        tmp = run_dir / (HELDOUT_FILE + ".tmp")
        tmp.write_text(json.dumps(rows, indent=1) + "\n")
        os.replace(tmp, run_dir / HELDOUT_FILE)
    callbacks.on_heldout(report)


def _save_epoch(
    session: Session, run_dir: Path, base: dict[str, Any], epoch: int, mean_loss: float, callbacks: Callbacks
) -> CheckpointReport:
    callbacks.on_status(f"saving epoch {epoch}")
    folder = epoch_dir(run_dir, epoch)
    metrics = {"epoch": epoch, "step": session.step, "train_loss": mean_loss, "base": base}
    _save_checkpoint(session.accelerator, session.model, session.tokenizer, session.recipe, folder, metrics)
    sharded = session.accelerator.distributed_type == DistributedType.FSDP
    # the last epoch's record keeps no optimiser state (AdamW's two moments, twice the model in
    # float32): nothing is left to train, and a resumed finished run only reports its checkpoints
    finished = epoch == session.recipe.epochs or session.step >= session.total_steps
    record = ResumeRecord(
        epoch=epoch,
        step=session.step,
        optimizer=None if sharded or finished else session.optimizer.state_dict(),
        scheduler=session.scheduler.state_dict(),
        rng=_rng_state(),
    )
    _save_resume(session.accelerator, run_dir, record)
    report = CheckpointReport(epoch, session.step, folder, mean_loss)
    callbacks.on_checkpoint(report)
    return report
