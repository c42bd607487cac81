"""Training throughput: our loop (training/loop.py, length-grouped micro batches) against a plain
Hugging Face Trainer on the same model, the same formatted examples (same labels, same residual
dropout), the same micro batch of 4 and 8 examples per optimiser step, one epoch each, and our loop
with plain random batches to show what grouping by length saves.

    .venv/bin/python bench/training.py            # bundled SmolLM2-135M, data/train.jsonl (61 examples)
    .venv/bin/python bench/training.py --quick    # 16 examples
    .venv/bin/python bench/training.py --smoke    # 2 short examples, nothing written (make test)
    .venv/bin/python bench/training.py --precision  # float32 vs bfloat16 autocast, alternated

Tokens/s counts real (non-padding) tokens over the training steps only (loading and saving
excluded). Each phase runs in its own process. Results: bench/results/training-<device>.json."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# the smoke form (make test): a tiny random model built here, two short examples; the spawned
# processes read it from the environment
SMOKE = os.environ.get("BENCH_TRAINING_SMOKE_MODEL")
MICRO, BATCH, MAX_LENGTH = (1, 2, 64) if SMOKE else (4, 8, 512)


def base_config() -> dict:
    from generation.bundled import bundled_backend_config

    return {"model_path": SMOKE} if SMOKE else bundled_backend_config()  # type: ignore[return-value]


def examples(n: int) -> list[dict]:
    rows = [json.loads(line) for line in (ROOT / "data" / "train.jsonl").read_text().splitlines()]
    return [
        {"id": r["id"], "messages": r["messages"] + [{"role": "assistant", "content": r["reference_answer"]}]}
        for r in rows[:n]
    ]


def recipe(grouped: bool, bf16: bool = False):
    from training.recipe import get_recipe

    return get_recipe("lima-mini").with_overrides(
        {
            "epochs": 1,
            "batch_size": BATCH,
            "micro_batch_size": MICRO,
            "max_length": MAX_LENGTH,
            "group_by_length": grouped,
            "bf16": bf16,
        }
    )


def ours(n: int, grouped: bool, queue, bf16: bool = False) -> None:
    from generation.hf_local import configure_threads
    from training.loop import Callbacks, train, write_examples

    configure_threads()
    reports = []
    with tempfile.TemporaryDirectory() as folder:
        write_examples(Path(folder), examples(n))
        train(Path(folder), base_config(), recipe(grouped, bf16), Callbacks(on_step=reports.append))
    last = reports[-1]
    queue.put(
        {
            "tokens": last.tokens,
            "tokens_per_second": last.tokens_per_second,
            "steps": last.step,
            "losses": [r.loss for r in reports],
        }
    )


def hf_trainer(n: int, queue) -> None:
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    from generation.hf_local import configure_threads
    from training.dropout import apply_residual_dropout
    from training.formatting import prepare_tokenizer
    from training.loop import encode_all, load_base

    configure_threads()
    spec = recipe(False)
    tokenizer, model = load_base(base_config())
    prepare_tokenizer(tokenizer, model, spec.eot_token)
    encoded, _ = encode_all(tokenizer, examples(n), spec)
    apply_residual_dropout(model, spec.residual_dropout_top)
    data = [{"input_ids": e.input_ids, "labels": e.labels, "attention_mask": [1] * len(e.input_ids)} for e in encoded]

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.monotonic()

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds = time.monotonic() - self.start

    clock = Clock()
    with tempfile.TemporaryDirectory() as folder:
        arguments = TrainingArguments(
            output_dir=folder,
            per_device_train_batch_size=MICRO,
            gradient_accumulation_steps=BATCH // MICRO,
            num_train_epochs=1,
            learning_rate=spec.lr,
            weight_decay=spec.weight_decay,
            adam_beta1=spec.adam_beta1,
            adam_beta2=spec.adam_beta2,
            lr_scheduler_type="linear",
            max_grad_norm=spec.max_grad_norm,
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
            remove_unused_columns=False,
            dataloader_num_workers=0,
            seed=spec.seed,
        )
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        trainer = Trainer(model=model, args=arguments, train_dataset=data, data_collator=collator, callbacks=[clock])
        trainer.train()
    tokens = sum(len(e.input_ids) for e in encoded)
    queue.put({"tokens": tokens, "tokens_per_second": tokens / clock.seconds, "steps": trainer.state.global_step})


def in_process(target, *args, **kwargs) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue), kwargs=kwargs)
    process.start()
    result = queue.get()
    process.join()
    return result


def padding(n: int) -> dict:
    """Padding share of the micro batches, grouped vs random, over 20 epochs' orders."""
    import random

    from training.batching import length_grouped_batches, padding_fraction, random_batches
    from training.formatting import prepare_tokenizer
    from training.loop import encode_all, load_base

    tokenizer, model = load_base(base_config())
    prepare_tokenizer(tokenizer, model, "<EOT>")
    encoded, _ = encode_all(tokenizer, examples(n), recipe(True))
    lengths = [len(e.input_ids) for e in encoded]
    shares = {"grouped": [], "random": []}
    for epoch in range(20):
        shares["grouped"].append(
            padding_fraction(lengths, length_grouped_batches(lengths, MICRO, random.Random(epoch)))
        )
        shares["random"].append(padding_fraction(lengths, random_batches(lengths, MICRO, random.Random(epoch))))
    return {name: sum(values) / len(values) for name, values in shares.items()}


def precision(n: int, device: str, rounds: int = 2) -> None:
    """Our loop in float32 and under bfloat16 autocast (recipe bf16), alternated: tokens/s and the
    loss curve of each (does the cheaper arithmetic learn the same?)."""

    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {"float32": [], "bfloat16": []}
    for _ in range(rounds):
        for name in runs:
            runs[name].append(in_process(ours, n, True, bf16=name == "bfloat16"))
            r = runs[name][-1]
            print(f"  {name:9} {r['tokens_per_second']:7.1f} tokens/s, losses {[round(x, 3) for x in r['losses']]}")
    speed = {name: sum(r["tokens_per_second"] for r in rs) / len(rs) for name, rs in runs.items()}
    gap = max(abs(a - b) for a, b in zip(runs["float32"][0]["losses"], runs["bfloat16"][0]["losses"], strict=True))
    summary = {
        "examples": n,
        "tokens_per_second": speed,
        "bfloat16_over_float32": round(speed["bfloat16"] / speed["float32"], 2),
        "largest_step_loss_gap": round(gap, 4),
        "runs": runs,
        "load_1min_before": load_before,
        "load_1min_after": os.getloadavg()[0],
    }
    print(f"bfloat16 autocast / float32: {summary['bfloat16_over_float32']}x; largest step-loss gap {gap:.4f}")
    out = ROOT / "bench" / "results" / f"training-precision-{device}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--precision", action="store_true", help="float32 vs bfloat16 autocast, alternated")
    parser.add_argument("--smoke", action="store_true", help="2 short examples, nothing written")
    args = parser.parse_args()
    n = 16 if args.quick else 61
    if args.smoke:  # that it still runs (make test), not a measurement: this file again, on a tiny model
        from tests.tiny_models import save_tiny

        with tempfile.TemporaryDirectory() as folder:
            env = dict(os.environ, BENCH_TRAINING_SMOKE_MODEL=str(save_tiny(Path(folder) / "tiny")))
            done = subprocess.run([sys.executable, __file__, "--quick"], env=env, timeout=600)
        raise SystemExit(done.returncode)
    if SMOKE:
        n = 2
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.precision:
        precision(n, device)
        return
    print(f"SmolLM2-135M, {n} examples, micro batch {MICRO}, {BATCH} per step, one epoch, {device}")
    results = {
        "ours (length-grouped)": in_process(ours, n, True),
        "ours (random batches)": in_process(ours, n, False),
        "HF Trainer": in_process(hf_trainer, n),
    }
    for name, result in results.items():
        print(
            f"  {name:24} {result['tokens_per_second']:7.1f} tokens/s "
            f"({result['tokens']} tokens, {result['steps']} steps)"
        )
    grouped = results["ours (length-grouped)"]["tokens_per_second"]
    plain = results["ours (random batches)"]["tokens_per_second"]
    trainer = results["HF Trainer"]["tokens_per_second"]
    pad = padding(n)
    summary = {
        "ours_vs_trainer": round(grouped / trainer, 2),
        "ours_random_vs_trainer": round(plain / trainer, 2),
        "grouped_vs_random": round(grouped / plain, 2),
        "padding_share_grouped": round(pad["grouped"], 3),
        "padding_share_random": round(pad["random"], 3),
    }
    print(
        f"ours / HF Trainer: {summary['ours_vs_trainer']}x (target >= 0.9); same batches unordered: "
        f"{summary['ours_random_vs_trainer']}x"
    )
    print(
        f"length grouping: {summary['grouped_vs_random']}x tokens/s; padding {pad['random']:.1%} -> "
        f"{pad['grouped']:.1%} of the token slots computed"
    )
    if SMOKE:
        return
    out = ROOT / "bench" / "results" / f"training-{device}.json"
    out.write_text(
        json.dumps({"machine": platform.machine(), "examples": n, "runs": results, **summary}, indent=2) + "\n"
    )
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
