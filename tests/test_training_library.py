"""The training library on tiny random Llamas: formatting and masks, the recipe's schedules,
training, checkpoints and resuming."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.tiny_models import CHAT, make_model, make_tokenizer, save_tiny
from training.batching import collate, length_grouped_batches, padding_fraction, random_batches
from training.dropout import apply_residual_dropout, decoder_layers, residual_dropout_schedule
from training.formatting import FormatError, encode_example, prepare_tokenizer
from training.loop import Callbacks, epoch_dir, load_resume, split_heldout, train, write_examples
from training.recipe import IGNORE_INDEX, RECIPES, Recipe, RecipeError, get_recipe
from training.schedule import lima_lr_factor

EOT = "<EOT>"
TALK = [
    {"role": "user", "content": "tell me a joke about the cat"},
    {"role": "assistant", "content": "the cat is happy"},
    {"role": "user", "content": "why"},
    {"role": "assistant", "content": "the sun is warm"},
]


def tiny_recipe(**overrides) -> Recipe:
    base = dict(name="tiny", epochs=2, lr=1e-2, final_lr=1e-3, batch_size=4, micro_batch_size=2, max_length=64)
    base.update(overrides)
    recipe = Recipe(**base)
    recipe.validate()
    return recipe


def prepared():
    tokenizer = make_tokenizer()
    model = make_model(tokenizer)
    prepare_tokenizer(tokenizer, model, EOT)
    return tokenizer, model


# -- formatting and label masks -------------------------------------------------------------------


def test_it_adds_the_eot_token_resizes_and_starts_it_from_the_base_end_of_turn():
    tokenizer = make_tokenizer()
    model = make_model(tokenizer)
    before = len(tokenizer)
    assert prepare_tokenizer(tokenizer, model, EOT) is True
    eot = tokenizer.convert_tokens_to_ids(EOT)
    assert len(tokenizer) == before + 1 == model.get_input_embeddings().weight.shape[0]
    assert model.get_output_embeddings().weight.shape[0] == before + 1
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert torch.equal(model.get_input_embeddings().weight[eot], model.get_input_embeddings().weight[im_end])
    assert model.generation_config.eos_token_id[0] == eot
    # a second call (a resumed run) adds nothing
    assert prepare_tokenizer(tokenizer, model, EOT) is False
    assert len(tokenizer) == before + 1


def test_it_learns_only_assistant_tokens_and_their_eot_in_every_turn():
    tokenizer, _ = prepared()
    encoded = encode_example(tokenizer, TALK, max_length=200, eot=EOT)
    tokens = tokenizer.convert_ids_to_tokens(encoded.input_ids)
    learned = [tok for tok, label in zip(tokens, encoded.labels, strict=True) if label != IGNORE_INDEX]
    assert learned == ["the", "cat", "is", "happy", EOT, "the", "sun", "is", "warm", EOT]
    # every user token, header and the EOT closing a user turn is masked
    for tok, label in zip(tokens, encoded.labels, strict=True):
        if tok in ("tell", "joke", "why", "user", "<|im_start|>"):
            assert label == IGNORE_INDEX
    assert tokens.count(EOT) == 4  # every utterance ends with EOT
    learned_ids = [i for i, lab in zip(encoded.input_ids, encoded.labels, strict=True) if lab != IGNORE_INDEX]
    assert learned_ids == [lab for lab in encoded.labels if lab != IGNORE_INDEX]


def test_the_loss_gives_logits_to_learned_tokens_only_a_chunk_at_a_time_with_the_full_losss_gradients(monkeypatch):
    """The output layer's logits are vocabulary-wide: the training loss computes them for the
    learned tokens only, LOSS_CHUNK_TOKENS at a time (recomputed in the backward pass), and gets
    the loss and the gradients the model's own forward over every position gives."""
    import training.loop as loop

    tokenizer, model = prepared()
    model.train()
    monkeypatch.setattr(loop, "LOSS_CHUNK_TOKENS", 7)
    short = [{"role": "user", "content": "what is the sky"}, {"role": "assistant", "content": "the sky is blue"}]
    pairs = [(e.input_ids, e.labels) for e in (encode_example(tokenizer, m, 200, EOT) for m in (TALK, short))]
    batch = collate(pairs, tokenizer.pad_token_id)
    learned = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    rows_seen: list[int] = []
    head = model.get_output_embeddings()
    hook = head.register_forward_hook(lambda m, i, out: rows_seen.append(out.shape[0] if out.dim() == 2 else -1))
    loss = loop._micro_batch_loss(model, batch, float(learned))
    loss.backward()
    hook.remove()
    chunked = {name: p.grad.clone() for name, p in model.named_parameters()}
    # forward and the backward's recomputation: every chunk of learned tokens, never a padded or prompt one
    assert sum(rows_seen) == 2 * learned and max(rows_seen) <= 7
    model.zero_grad()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:].reshape(-1)
    full = (
        torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), labels, ignore_index=IGNORE_INDEX, reduction="sum"
        )
        / learned
    )
    full.backward()
    assert torch.allclose(loss, full, atol=1e-5)
    for name, p in model.named_parameters():
        assert torch.allclose(chunked[name], p.grad, atol=1e-5), name


def test_it_trims_examples_to_max_length_and_refuses_one_with_nothing_left_to_learn():
    tokenizer, _ = prepared()
    long = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " ".join(["cat"] * 100)}]
    encoded = encode_example(tokenizer, long, max_length=30, eot=EOT)
    assert len(encoded.input_ids) == 30 and encoded.trimmed
    long_prompt = [{"role": "user", "content": " ".join(["dog"] * 100)}, {"role": "assistant", "content": "yes"}]
    with pytest.raises(FormatError, match="no answer token is left after trimming to 30"):
        encode_example(tokenizer, long_prompt, max_length=30, eot=EOT)


@pytest.mark.parametrize(
    "messages, error",
    [
        ([], "non-empty list"),
        ([{"role": "user", "content": "hi"}], "last message must be the assistant"),
        ([{"role": "bot", "content": "hi"}], "role must be one of"),
        ([{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}], "non-empty text"),
    ],
)
def test_it_refuses_malformed_conversations(messages, error):
    tokenizer, _ = prepared()
    with pytest.raises(FormatError, match=error):
        encode_example(tokenizer, messages, max_length=64, eot=EOT)


# -- recipe, schedules, batching ------------------------------------------------------------------


def test_the_lima_recipe_is_the_papers():
    lima = get_recipe("lima")
    assert (lima.epochs, lima.lr, lima.final_lr, lima.warmup_steps) == (15, 1e-5, 1e-6, 0)
    assert (lima.adam_beta1, lima.adam_beta2, lima.weight_decay) == (0.9, 0.95, 0.1)
    assert (lima.batch_size, lima.max_length, lima.residual_dropout_top, lima.residual_dropout_bottom) == (
        32,
        2048,
        0.3,
        0.0,
    )
    assert lima.accumulation_steps() == 8 and lima.accumulation_steps(processes=4) == 2
    assert set(RECIPES) == {"lima", "lima-mini"}
    with pytest.raises(RecipeError, match="unknown recipe 'alpaca'"):
        get_recipe("alpaca")


def test_recipe_overrides_are_typed_and_checked():
    recipe = get_recipe("lima").with_overrides({"epochs": "3", "bf16": "true", "lr": "2e-5"})
    assert (recipe.epochs, recipe.bf16, recipe.lr) == (3, True, 2e-5)
    with pytest.raises(RecipeError, match="unknown field 'epoch'"):
        get_recipe("lima").with_overrides({"epoch": "3"})
    with pytest.raises(RecipeError, match="epochs must be a int"):
        get_recipe("lima").with_overrides({"epochs": "many"})
    with pytest.raises(RecipeError, match="multiple of micro_batch_size"):
        get_recipe("lima").with_overrides({"batch_size": "30"})


def test_the_learning_rate_is_1e5_at_the_first_step_and_1e6_at_the_last():
    total = 15 * 32  # the paper: 1,000 examples / 32 per step ~ 32 steps, 15 epochs
    lima = get_recipe("lima")
    factor = lima_lr_factor(total, lima.lr, lima.final_lr, lima.warmup_steps)
    lrs = [lima.lr * factor(step) for step in range(total)]
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[-1] == pytest.approx(1e-6)
    assert lrs[total // 2] == pytest.approx(1e-5 - (1e-5 - 1e-6) * (total // 2) / (total - 1))
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))  # linear decay, no warmup bump


def test_residual_dropout_rises_from_zero_at_layer_0_to_the_top_value_and_is_off_in_eval():
    assert residual_dropout_schedule(4, 0.3) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    tokenizer = make_tokenizer()
    model = make_model(tokenizer, layers=3, hidden=64)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
    with torch.no_grad():
        reference = model(input_ids=ids).logits
    assert apply_residual_dropout(model, 0.3) == pytest.approx([0.0, 0.15, 0.3])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, reference)  # eval: no dropout anywhere

    layers = decoder_layers(model)
    seen: dict[str, list[torch.Tensor]] = {"bottom": [], "top": []}
    layers[0].mlp.register_forward_hook(lambda m, a, out: seen["bottom"].append(out))
    layers[-1].mlp.register_forward_hook(lambda m, a, out: seen["top"].append(out))
    model.train()
    with torch.no_grad():
        model(input_ids=ids)
    # hooks run in order: our dropout hook first, then the recorder sees the dropped output
    top = seen["top"][0]
    zeroed = (top == 0).float().mean().item()
    assert 0.15 < zeroed < 0.45  # about 30% of the top layer's MLP output dropped
    assert (seen["bottom"][0] == 0).float().mean().item() == 0.0  # layer 0: p = 0


def test_length_grouped_batches_waste_less_padding_and_keep_every_example_once():
    rng = random.Random(1)
    lengths = [rng.randint(10, 500) for _ in range(256)]
    grouped = length_grouped_batches(lengths, 4, random.Random(2))
    plain = random_batches(lengths, 4, random.Random(2))
    assert sorted(i for b in grouped for i in b) == list(range(256))
    assert padding_fraction(lengths, grouped) < padding_fraction(lengths, plain) / 3
    batch = collate([([1, 2, 3], [IGNORE_INDEX, 2, 3]), ([4], [4])], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


# -- training -------------------------------------------------------------------------------------

REPEATED = {"messages": [{"role": "user", "content": "tell me a joke"}, {"role": "assistant", "content": "no"}]}
EXAMPLES = [
    {"id": f"ex{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    for i, (q, a) in enumerate(CHAT)
]


def test_a_tiny_llama_learns_a_repeated_example(tmp_path):
    base = save_tiny(tmp_path / "base")
    run_dir = tmp_path / "run"
    write_examples(run_dir, [REPEATED] * 8)
    losses = []
    recipe = tiny_recipe(epochs=6, final_lr=1e-2, residual_dropout_top=0.0)
    outcome = train(run_dir, {"model_path": str(base)}, recipe, Callbacks(on_step=lambda r: losses.append(r.loss)))
    assert len(losses) == 6 * 2  # 8 examples / 4 per step, 6 epochs
    assert losses[-1] < losses[0] / 4
    assert [c.epoch for c in outcome.checkpoints] == [1, 2, 3, 4, 5, 6]
    # each epoch is a model a generation backend can load, with the EOT-aware tokenizer and recipe
    folder = epoch_dir(run_dir, 6)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert EOT in tokenizer.get_vocab() and EOT in tokenizer.chat_template
    assert Recipe.load(folder) == recipe
    assert json.loads((folder / "metrics.json").read_text())["epoch"] == 6
    prompt = tokenizer.apply_chat_template(REPEATED["messages"][:1], add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=4, do_sample=False, eos_token_id=model.generation_config.eos_token_id)
    assert tokenizer.convert_ids_to_tokens(out[0, ids.shape[1] :].tolist())[:2] == ["no", EOT]


def test_the_lr_the_optimiser_used_follows_the_schedule(tmp_path):
    base = save_tiny(tmp_path / "base")
    write_examples(tmp_path / "run", EXAMPLES)
    lrs = []
    recipe = tiny_recipe(epochs=3, lr=1e-3, final_lr=1e-4)
    train(tmp_path / "run", {"model_path": str(base)}, recipe, Callbacks(on_step=lambda r: lrs.append(r.lr)))
    assert len(lrs) == 6  # 6 examples, 4 per step -> 2 steps per epoch
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)


def _train_in_child(run_dir, base, recipe, stop_after_epoch):
    def on_checkpoint(report):
        if report.epoch == stop_after_epoch:
            os.kill(os.getpid(), signal.SIGKILL)  # a kill, not an exception: no clean-up runs

    train(run_dir, {"model_path": str(base)}, recipe, Callbacks(on_checkpoint=on_checkpoint))


def test_a_killed_run_resumes_from_its_last_checkpoint_and_ends_where_an_unbroken_one_does(tmp_path):
    base = save_tiny(tmp_path / "base")
    recipe = tiny_recipe(epochs=3, residual_dropout_top=0.2)
    for name in ("unbroken", "killed"):
        write_examples(tmp_path / name, EXAMPLES)
    train(tmp_path / "unbroken", {"model_path": str(base)}, recipe)

    child = multiprocessing.get_context("spawn").Process(
        target=_train_in_child, args=(tmp_path / "killed", base, recipe, 2)
    )
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    assert load_resume(tmp_path / "killed").epoch == 2 and not epoch_dir(tmp_path / "killed", 3).exists()

    steps = []
    outcome = train(tmp_path / "killed", {"model_path": str(base)}, recipe, Callbacks(on_step=steps.append))
    assert outcome.resumed_from_epoch == 2
    assert [c.epoch for c in outcome.checkpoints] == [3]
    assert [s.step for s in steps] == [5, 6]
    resumed = AutoModelForCausalLM.from_pretrained(epoch_dir(tmp_path / "killed", 3)).state_dict()
    unbroken = AutoModelForCausalLM.from_pretrained(epoch_dir(tmp_path / "unbroken", 3)).state_dict()
    for name, tensor in unbroken.items():
        assert torch.allclose(resumed[name], tensor, atol=1e-6), name


def test_a_finished_run_keeps_no_optimiser_state_and_a_second_call_trains_nothing(tmp_path):
    base = save_tiny(tmp_path / "base")
    recipe = tiny_recipe(epochs=2)
    write_examples(tmp_path / "run", EXAMPLES)
    train(tmp_path / "run", {"model_path": str(base)}, recipe)
    record = load_resume(tmp_path / "run")
    assert (record.epoch, record.optimizer) == (2, None), "AdamW's moments are not kept once nothing is left"
    steps = []
    again = train(tmp_path / "run", {"model_path": str(base)}, recipe, Callbacks(on_step=steps.append))
    assert again.resumed_from_epoch == 2 and steps == [] and again.checkpoints == []


@pytest.mark.parametrize(
    "options", [{"bf16": True}, {"gradient_checkpointing": True}, {"lora_r": 4}], ids=["bf16", "ckpt", "lora"]
)
def test_the_options_for_bigger_models_train_and_save_a_plain_model(tmp_path, options):
    base = save_tiny(tmp_path / "base")
    write_examples(tmp_path / "run", [REPEATED] * 4)
    start = time.monotonic()
    losses = []
    recipe = tiny_recipe(epochs=3, residual_dropout_top=0.0, **options)
    train(tmp_path / "run", {"model_path": str(base)}, recipe, Callbacks(on_step=lambda r: losses.append(r.loss)))
    assert losses[-1] < losses[0]
    model = AutoModelForCausalLM.from_pretrained(epoch_dir(tmp_path / "run", 3))
    assert not any("lora" in name for name in model.state_dict())
    assert time.monotonic() - start < 120


def test_two_data_parallel_processes_train_the_model_one_process_trains_on_the_same_batches(tmp_path):
    # the processes' micro batches hold different numbers of learned tokens: only a loss divided
    # by the learned tokens of the whole step (all processes) gives one process's gradients
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import free_port

    base = save_tiny(tmp_path / "base")
    examples = EXAMPLES + [
        {
            "id": "long",
            "messages": [{"role": "user", "content": "tell"}, {"role": "assistant", "content": TALK[3]["content"] * 3}],
        },
        {"id": "short", "messages": [{"role": "user", "content": "why"}, {"role": "assistant", "content": "no"}]},
    ]
    assert len(examples) == 8  # four micro batches of 2: one step of 4 = two per process
    recipe = tiny_recipe(epochs=2, lr=1e-3, final_lr=1e-3, residual_dropout_top=0.0, group_by_length=False)
    for name in ("one", "two"):
        write_examples(tmp_path / name, examples)
        recipe.save(tmp_path / name)
        (tmp_path / name / "base.json").write_text(json.dumps({"model_path": str(base)}))
    train(tmp_path / "one", {"model_path": str(base)}, recipe)
    torchrun = Path(sys.executable).parent / "torchrun"
    launched = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            "-m",
            "training",
            "train",
            "--run-dir",
            str(tmp_path / "two"),
        ],
        env={**os.environ, "ACCELERATE_USE_CPU": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert launched.returncode == 0, launched.stderr[-2000:]
    one = AutoModelForCausalLM.from_pretrained(epoch_dir(tmp_path / "one", 2)).state_dict()
    two = AutoModelForCausalLM.from_pretrained(epoch_dir(tmp_path / "two", 2)).state_dict()
    for name, tensor in one.items():
        assert torch.allclose(two[name], tensor, atol=2e-5), name
    losses = [json.loads(line) for line in (tmp_path / "two" / "progress.jsonl").read_text().splitlines()]
    assert [e["step"] for e in losses if e["event"] == "step"] == [1, 2, 3, 4]


def _loss_of(folder, examples) -> float:
    """The mean loss per learned token of a saved checkpoint on these examples, computed here with
    the model in eval mode: what the held-out figure must equal."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    total, learned = 0.0, 0
    for example in examples:
        encoded = encode_example(tokenizer, example["messages"], 64, EOT)
        ids = torch.tensor([encoded.input_ids])
        labels = torch.tensor([encoded.labels])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[:, :-1].float()
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        ).item()
        learned += encoded.learned_tokens
    return total / learned


def test_held_out_examples_are_not_trained_on_and_their_loss_is_read_with_dropout_off(tmp_path):
    base = save_tiny(tmp_path / "base")
    examples = [dict(e, id=f"{e['id']}-{copy}") for copy in range(2) for e in EXAMPLES]  # 12
    write_examples(tmp_path / "run", examples)
    recipe = tiny_recipe(epochs=2, residual_dropout_top=0.5, heldout_examples=2)
    steps, held = [], []
    train(tmp_path / "run", {"model_path": str(base)}, recipe, Callbacks(on_step=steps.append, on_heldout=held.append))
    assert len(steps) == 2 * 3  # 10 trained on, 4 per step: the 2 held out are not in any batch
    assert [(h.epoch, h.examples) for h in held] == [(0, 2), (1, 2), (2, 2)]
    trained, held_out = split_heldout(examples, recipe)
    assert len(trained) == 10 and {e["id"] for e in held_out}.isdisjoint(e["id"] for e in trained)
    # the figure is the checkpoint's loss on those two in eval mode (dropout 0.5 would move it)
    assert held[2].loss == pytest.approx(_loss_of(epoch_dir(tmp_path / "run", 2), held_out), rel=1e-4)
    assert held[0].loss > held[2].loss  # it learned something that carries over
    # a call on the finished run reports the saved figures again (the job may have missed them)
    again = []
    train(tmp_path / "run", {"model_path": str(base)}, recipe, Callbacks(on_heldout=again.append))
    assert again == held
    # never more than a fifth of the examples is held out
    assert len(split_heldout(EXAMPLES, tiny_recipe(heldout_examples=5))[1]) == 1
    assert split_heldout(EXAMPLES, tiny_recipe())[1] == []


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied-embeddings"])
def test_a_lora_checkpoint_is_what_peft_merges_written_without_a_copy_of_the_model(tmp_path, tied):
    """The merged checkpoint is written a tensor at a time (no second model in memory at every
    save): the same tensors, names and config as peft's merge_and_unload + save_pretrained."""
    import copy

    from training.loop import _save_checkpoint, _with_lora, make_accelerator

    tokenizer = make_tokenizer(())
    recipe = tiny_recipe(lora_r=4)
    model = _with_lora(make_model(tokenizer, tie_word_embeddings=tied), recipe)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # as after training: peft starts B at zero, which merges to nothing
                parameter.normal_(0, 0.05)
    _save_checkpoint(make_accelerator(recipe), model, tokenizer, recipe, tmp_path / "ours", {"epoch": 1})
    merged = copy.deepcopy(model).merge_and_unload()
    merged.save_pretrained(tmp_path / "peft")

    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "ours")
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "peft")
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for name, tensor in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], tensor), name
    base = make_model(tokenizer, tie_word_embeddings=tied).state_dict()
    assert not torch.equal(
        ours.state_dict()["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"]
    )
    from safetensors import safe_open

    with (
        safe_open(tmp_path / "ours" / "model.safetensors", "pt") as a,
        safe_open(tmp_path / "peft" / "model.safetensors", "pt") as b,
    ):
        assert set(a.keys()) == set(b.keys()) and a.metadata() == b.metadata()
    for file in ("config.json", "generation_config.json"):
        assert json.loads((tmp_path / "ours" / file).read_text()) == json.loads((tmp_path / "peft" / file).read_text())
    # the model being trained is untouched: still the adapters, still trainable
    assert any("lora_A" in name for name, _ in model.named_parameters())
