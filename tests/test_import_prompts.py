import json

import pytest
from django.core.management import CommandError, call_command

from evalsite.catalog.models import Prompt, PromptSet

pytestmark = pytest.mark.django_db


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


OURS = [
    {
        "id": "p1",
        "messages": [{"role": "user", "content": "Why is the sky blue?"}],
        "source": "authors",
        "tags": ["science"],
    },
    {
        "id": 2,
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Tell me a joke."},
        ],
        "source": "authors",
    },
]
LIMA = [
    {"conversations": ["What is a good name for a cat?"], "source": "reddit"},
    {"conversations": ["Explain recursion.", "Recursion is when a function calls itself."], "source": "stackexchange"},
    {"conversations": ["Hi", "Hello!", "Write a haiku."], "source": "multi_turn"},
]


def test_it_imports_our_format(tmp_path):
    call_command("import_prompts", write_jsonl(tmp_path / "p.jsonl", OURS), set_name="mine")
    prompts = {p.external_id: p for p in Prompt.objects.filter(prompt_set__name="mine")}
    assert set(prompts) == {"p1", "2"}
    assert prompts["p1"].text == "Why is the sky blue?"
    assert prompts["p1"].tags == ["science"]
    assert prompts["2"].messages[1] == {"role": "assistant", "content": "Hello!"}
    assert prompts["2"].is_multi_turn and "multi_turn" in prompts["2"].tags


def test_it_imports_the_published_lima_format(tmp_path):
    call_command("import_prompts", write_jsonl(tmp_path / "lima.jsonl", LIMA), set_name="lima-test")
    prompts = list(Prompt.objects.filter(prompt_set__name="lima-test").order_by("id"))
    assert [p.source for p in prompts] == ["reddit", "stackexchange", "multi_turn"]
    assert prompts[0].messages == [{"role": "user", "content": "What is a good name for a cat?"}]
    # a trailing assistant turn is kept as the reference answer, not as part of the prompt
    assert prompts[1].messages == [{"role": "user", "content": "Explain recursion."}]
    assert prompts[1].reference_answer == "Recursion is when a function calls itself."
    assert [m["role"] for m in prompts[2].messages] == ["user", "assistant", "user"]
    assert prompts[2].tags == ["multi_turn"]


def test_reimporting_the_same_file_creates_no_duplicates(tmp_path, capsys):
    path = write_jsonl(tmp_path / "lima.jsonl", LIMA)
    call_command("import_prompts", path, set_name="s")
    call_command("import_prompts", path, set_name="s")
    assert Prompt.objects.filter(prompt_set__name="s").count() == 3
    assert "0 created, 0 updated, 3 unchanged" in capsys.readouterr().out


def test_a_changed_prompt_is_updated_in_place(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", OURS)
    call_command("import_prompts", path, set_name="s")
    changed = [dict(OURS[0], tags=["science", "ood"]), OURS[1]]
    call_command("import_prompts", write_jsonl(path, changed), set_name="s")
    assert Prompt.objects.get(external_id="p1").tags == ["ood", "science"]
    assert Prompt.objects.count() == 2


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "must be a JSON object"),
        ('{"id": "x"}', "expected 'messages'"),
        ('{"id": "x", "messages": []}', "non-empty list"),
        ('{"id": "x", "messages": [{"role": "robot", "content": "hi"}]}', "role must be one of"),
        (
            '{"id": "x", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}',
            "last message must be the user's",
        ),
        ('{"id": "x", "messages": [{"role": "user", "content": "hi"}], "tags": "ood"}', "'tags' must be a list"),
        ('{"conversations": [], "source": "x"}', "'conversations' must be a non-empty list"),
        ('{"id": "p1", "messages": [{"role": "user", "content": "again"}]}', "repeats line 1"),
    ],
)
def test_a_malformed_line_names_file_and_line_and_keeps_nothing(tmp_path, bad_line, reason):
    PromptSet.objects.create(name="existing")
    path = write_jsonl(tmp_path / "bad.jsonl", [OURS[0], OURS[1], bad_line, LIMA[0]])
    with pytest.raises(CommandError) as excinfo:
        call_command("import_prompts", path, set_name="new-set")
    assert str(excinfo.value).startswith(f"{path}:3: ")
    assert reason in str(excinfo.value)
    assert Prompt.objects.count() == 0
    assert list(PromptSet.objects.values_list("name", flat=True)) == ["existing"]


def test_a_failed_reimport_leaves_the_earlier_import_untouched(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", OURS)
    call_command("import_prompts", path, set_name="s")
    write_jsonl(path, [dict(OURS[0], source="changed"), "{broken"])
    with pytest.raises(CommandError, match=r"p\.jsonl:2: "):
        call_command("import_prompts", path, set_name="s")
    assert Prompt.objects.get(external_id="p1").source == "authors"


def test_a_missing_file_or_empty_file_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_prompts", tmp_path / "nope.jsonl", set_name="s")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(CommandError, match="no prompts in the file"):
        call_command("import_prompts", tmp_path / "empty.jsonl", set_name="s")
    assert not PromptSet.objects.exists()


def test_invalid_utf8_is_reported_with_its_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(OURS[0]).encode() + b"\n" + '{"id": "caf\xe9"}'.encode("latin-1") + b"\n")
    with pytest.raises(CommandError, match=r"latin1\.jsonl:2: not UTF-8"):
        call_command("import_prompts", path, set_name="s")
