"""Prompts and responses in the formats other tools publish them in (fixtures written here in
those shapes): AlpacaEval's eval set and model outputs (JSON arrays with more fields than we use),
just-eval's copy of the LIMA test prompts, MT-bench's question.jsonl, JSON lines with a byte order
mark and CRLF line endings."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from evalsite.catalog.models import Prompt, Response, System

pytestmark = pytest.mark.django_db

ALPACA_EVAL_SET = [
    {
        "instruction": "What are the names of some famous actors that started their careers on Broadway?",
        "output": "Some famous actors that started their careers on Broadway are...",
        "generator": "text_davinci_003",
        "dataset": "helpful_base",
    },
    {
        "instruction": "Give three tips for staying healthy.",
        "output": "1. Eat well.",
        "generator": "text_davinci_003",
        "dataset": "selfinstruct",
        "datasplit": "eval",
    },
    {
        "instruction": "Rewrite the sentence in the passive voice.",
        "input": "The cat chased the mouse.",
        "output": "The mouse was chased by the cat.",
        "generator": "text_davinci_003",
        "dataset": "oasst",
    },
]

MODEL_OUTPUTS = [
    {
        "instruction": ALPACA_EVAL_SET[0]["instruction"],
        "output": "Hugh Jackman, Meryl Streep and Viola Davis all began on stage.",
        "generator": "gpt4_1106_preview",
        "dataset": "helpful_base",
        "datasplit": "eval",
        "price_per_example": 0.0123,
        "time_per_example": 2.3,
        "raw_completion": None,
    },
    {
        "instruction": "Rewrite the sentence in the passive voice.",
        "input": "The cat chased the mouse.",
        "output": "The mouse was chased by the cat.",
        "generator": "gpt4_1106_preview",
        "dataset": "oasst",
    },
]


def json_array(path, rows, indent=4):
    path.write_text(json.dumps(rows, indent=indent, ensure_ascii=False))
    return path


def test_alpacaeval_eval_set_and_model_outputs_import_as_json_arrays(tmp_path, capsys):
    call_command("import_prompts", json_array(tmp_path / "alpaca_eval.json", ALPACA_EVAL_SET), set_name="alpaca-eval")
    out = capsys.readouterr().out
    assert "3 created" in out and "read as alpacaeval 3" in out
    assert "fields not used: datasplit (1 row), generator (3 rows), output (3 rows)" in out
    prompts = {p.source: p for p in Prompt.objects.filter(prompt_set__name="alpaca-eval")}
    assert set(prompts) == {"helpful_base", "selfinstruct", "oasst"}
    assert prompts["oasst"].messages == [
        {"role": "user", "content": "Rewrite the sentence in the passive voice.\n\nThe cat chased the mouse."}
    ]

    call_command("systems", "add", "gpt4-turbo", "--backend", "imported")
    outputs = json_array(tmp_path / "model_outputs.json", MODEL_OUTPUTS, indent=2)
    call_command("import_responses", outputs, system="gpt4-turbo", set_name="alpaca-eval")
    out = capsys.readouterr().out
    assert "2 created" in out and "fields not used: " in out and "price_per_example (1 row)" in out
    answers = {r.prompt.source: r.text for r in Response.objects.filter(system__name="gpt4-turbo")}
    assert answers == {
        "helpful_base": MODEL_OUTPUTS[0]["output"],
        "oasst": "The mouse was chased by the cat.",
    }
    # the same file again changes nothing
    call_command("import_responses", outputs, system="gpt4-turbo", set_name="alpaca-eval")
    assert "0 created, 0 updated, 2 unchanged" in capsys.readouterr().out


def test_just_evals_lima_test_prompts_keep_their_ids(tmp_path):
    rows = [
        {"id": "lima_0", "instruction": "Can brain cells move?", "source_id": "lima-0", "dataset": "lima"},
        {"id": "lima_1", "instruction": "Write a haiku.", "source_id": "lima-1", "dataset": "lima", "output": ""},
    ]
    call_command("import_prompts", json_array(tmp_path / "just_eval_lima.json", rows), set_name="lima-test")
    assert list(Prompt.objects.order_by("id").values_list("external_id", "source")) == [
        ("lima_0", "lima"),
        ("lima_1", "lima"),
    ]


def test_mt_bench_questions_keep_their_second_turn_as_a_follow_up(tmp_path):
    questions = tmp_path / "question.jsonl"
    rows = [
        {
            "question_id": 81,
            "category": "writing",
            "turns": ["Compose a travel blog post about Hawaii.", "Rewrite it starting every sentence with A."],
        },
        {
            "question_id": 111,
            "category": "math",
            "turns": ["What is the area of the triangle?", "What is the area of its circumcircle?"],
            "reference": ["Area is 3", "5pi"],
        },
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    call_command("import_prompts", questions, set_name="mt-bench")
    first = Prompt.objects.get(external_id="81")
    assert first.messages == [{"role": "user", "content": "Compose a travel blog post about Hawaii."}]
    assert first.follow_ups == ["Rewrite it starting every sentence with A."]
    assert (first.source, first.tags) == ("writing", ["mt_bench"])
    assert Prompt.objects.get(external_id="111").reference_answer == "Area is 3"


def test_json_lines_with_a_bom_and_crlf_import(tmp_path):
    path = tmp_path / "prompts.jsonl"
    lines = [json.dumps({"id": f"p{i}", "messages": [{"role": "user", "content": f"Q{i}?"}]}) for i in range(2)]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    call_command("import_prompts", path, set_name="bom")
    assert sorted(Prompt.objects.values_list("external_id", flat=True)) == ["p0", "p1"]


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ('[\n  {"instruction": "a"},\n  "just text"\n]', 3, "each element of the array must be a JSON object"),
        ('[\n  {"instruction": "a"},\n  {"instruction": }\n]', 3, "not valid JSON"),
        ('[\n  {"instruction": "a"}\n  {"instruction": "b"}\n]', 3, "expected ',' or ']' after an element"),
        ('[\n  {"instruction": "a"},\n', 3, "not valid JSON"),
        ('[\n  {"instruction": "a"}\n', 3, "the array is not closed"),
        ('[\n  {"instruction": "a"}\n]\n{"x": 1}', 4, "extra data after the array"),
        ('[\n  {"instruction": "a"},\n  {"instruction": ""}\n]', 3, "'instruction' must be non-empty text"),
    ],
)
def test_a_broken_json_array_names_its_line_and_keeps_nothing(tmp_path, text, line, reason):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(CommandError) as excinfo:
        call_command("import_prompts", path, set_name="bad")
    assert str(excinfo.value).startswith(f"{path}:{line}: ") and reason in str(excinfo.value)
    assert not Prompt.objects.exists()


def test_an_imported_system_named_in_the_outputs_is_not_required_to_match(tmp_path):
    # AlpacaEval's `generator` names the model that wrote the outputs; the system is ours to name
    call_command("import_prompts", json_array(tmp_path / "set.json", ALPACA_EVAL_SET[:1]), set_name="s")
    System.objects.create(name="baseline", backend="imported")
    call_command("import_responses", json_array(tmp_path / "o.json", MODEL_OUTPUTS[:1]), system="baseline")
    assert Response.objects.get().system.name == "baseline"
