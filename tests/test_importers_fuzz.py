"""Generated garbage fed to every importer: each file is either read, or refused with its file
(and line) named and nothing kept; never a traceback from deep inside the database (a NUL, a lone
surrogate, an id longer than its column, a token count past the column's range, bytes that are not
UTF-8, a truncated XML)."""

from __future__ import annotations

import json
import re

import pytest
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.finetune.models import TrainingDataset

pytestmark = pytest.mark.django_db

NASTY = ["\x00", "\ud800", "x" * 301, "", " ", "é", "<row/>", '"', "\r\n"]
text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(NASTY),
    st.builds(lambda a, b: a + b, st.text(max_size=5), st.sampled_from(NASTY)),
)
number = st.one_of(st.integers(min_value=-5, max_value=10**13), st.floats(allow_nan=False), st.booleans(), st.none())
value = st.one_of(text, number, st.lists(text, max_size=3))
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "robot"]), "content": text})
KEYS = (
    "id messages source tags instruction input output response prompt conversations turns question_id "
    "completion_tokens prompt_tokens sample_index reference_answer dataset title body link_id parent_id subreddit score"
).split()
row = st.one_of(
    st.dictionaries(
        st.sampled_from(KEYS), st.one_of(value, st.lists(message, max_size=3), st.lists(text, max_size=3)), max_size=6
    ),
    st.fixed_dictionaries({"id": text, "messages": st.lists(message, min_size=1, max_size=3), "source": text}),
    st.fixed_dictionaries({"instruction": text, "output": text, "completion_tokens": number}),
    st.fixed_dictionaries({"conversations": st.lists(text, max_size=4), "source": text}),
)


def lines(rows: list, as_array: bool, junk: bytes) -> bytes:
    if as_array:
        body = json.dumps(rows).encode()
    else:
        body = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    return body + junk


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def refused_cleanly(exc: CommandError, path) -> bool:
    message = str(exc)
    return bool(re.match(rf"^{re.escape(str(path))}(:\d+)?: ", message)) or message.startswith(
        ("no example passed the filters", "give at least one source")
    ) or "match no prompt" in message  # fmt: skip


@FUZZ
@given(rows=st.lists(row, max_size=4), as_array=st.booleans(), junk=st.sampled_from([b"", b"\xff\xfe", b"{", b"[1]"]))
def test_import_prompts_and_responses_take_or_refuse_any_file(tmp_path_factory, rows, as_array, junk):
    path = tmp_path_factory.mktemp("f") / "in.json"
    path.write_bytes(lines(rows, as_array, junk))
    before = (Prompt.objects.count(), Response.objects.count())
    try:
        call_command("import_prompts", path, set_name="fuzz")
    except CommandError as exc:
        assert refused_cleanly(exc, path), str(exc)
        assert (Prompt.objects.count(), Response.objects.count()) == before
    System.objects.get_or_create(name="fuzzed", defaults={"backend": "imported"})
    before = Response.objects.count()
    try:
        call_command("import_responses", path, system="fuzzed")
    except CommandError as exc:
        assert refused_cleanly(exc, path), str(exc)
        assert Response.objects.count() == before


@FUZZ
@given(
    rows=st.lists(row, max_size=4),
    junk=st.sampled_from([b"", b"\xff\xfe\n", b"{\n"]),
    kind=st.sampled_from(["jsonl", "lima", "reddit"]),
)
def test_curate_takes_or_refuses_any_json_lines(tmp_path_factory, rows, junk, kind):
    path = tmp_path_factory.mktemp("f") / "in.jsonl"
    path.write_bytes(lines(rows, False, junk))
    before = TrainingDataset.objects.count()
    try:
        call_command("curate", name=f"fuzz-{TrainingDataset.objects.count()}", tokenizer="none", **{kind: [str(path)]})
    except CommandError as exc:
        assert refused_cleanly(exc, path), str(exc)
        assert TrainingDataset.objects.count() == before


@FUZZ
@given(cells=st.lists(st.tuples(text, text), max_size=3), junk=st.sampled_from([b"", b"\xff\n", b'"open\n']))
def test_curate_takes_or_refuses_any_wikihow_csv(tmp_path_factory, cells, junk):
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["title", "text"])
    writer.writerows(cells)
    path = tmp_path_factory.mktemp("f") / "wikihow.csv"
    path.write_bytes(out.getvalue().encode("utf-8", "surrogatepass") + junk)
    before = TrainingDataset.objects.count()
    try:
        call_command("curate", name=f"wh-{before}", tokenizer="none", wikihow=[str(path)])
    except CommandError as exc:
        assert refused_cleanly(exc, path), str(exc)
        assert TrainingDataset.objects.count() == before


@FUZZ
@given(
    attrs=st.lists(
        st.dictionaries(
            st.sampled_from(["Id", "PostTypeId", "ParentId", "Score", "Body", "Title"]),
            st.one_of(st.integers(-3, 30).map(str), st.text(max_size=8)),
            max_size=6,
        ),
        max_size=4,
    ),
    cut=st.booleans(),
)
def test_curate_takes_or_refuses_any_posts_xml(tmp_path_factory, attrs, cut):
    from xml.sax.saxutils import quoteattr

    rows = "".join("<row " + " ".join(f"{k}={quoteattr(v)}" for k, v in a.items()) + " />\r\n" for a in attrs)
    path = tmp_path_factory.mktemp("f") / "Posts.xml"
    text_ = '\ufeff<?xml version="1.0" encoding="utf-8"?>\r\n<posts>\r\n' + rows + ("" if cut else "</posts>")
    path.write_bytes(text_.encode("utf-8", "surrogatepass"))
    before = TrainingDataset.objects.count()
    try:
        call_command("curate", name=f"se-{before}", tokenizer="none", stackexchange=[f"{path}:site"])
    except CommandError as exc:
        assert refused_cleanly(exc, path), str(exc)
        assert TrainingDataset.objects.count() == before


def test_the_named_cases_each_name_their_line(tmp_path):
    PromptSet.objects.create(name="s")
    cases = {
        "nul": ({"id": "a", "messages": [{"role": "user", "content": "hi\x00"}]}, "contains a NUL character"),
        "surrogate": ({"id": "a", "messages": [{"role": "user", "content": "hi\ud800"}]}, "lone surrogate"),
        "long id": ({"id": "x" * 101, "messages": [{"role": "user", "content": "hi"}]}, "the id is 101 characters"),
        "long source": ({"messages": [{"role": "user", "content": "hi"}], "source": "s" * 101}, "the source is 101"),
    }
    for name, (bad, reason) in cases.items():
        path = tmp_path / f"{name}.jsonl"
        good = {"id": "ok", "messages": [{"role": "user", "content": "fine"}]}
        path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(CommandError, match=f"^{re.escape(str(path))}:2: .*{reason}"):
            call_command("import_prompts", path, set_name="s")
    System.objects.create(name="b", backend="imported")
    counts = tmp_path / "counts.jsonl"
    counts.write_text(json.dumps({"id": "ok", "response": "r", "completion_tokens": 10**12}) + "\n")
    with pytest.raises(CommandError, match=f"^{re.escape(str(counts))}:1: 'completion_tokens' must be a whole number"):
        call_command("import_responses", counts, system="b")
    csv_path = tmp_path / "wikihow.csv"
    csv_path.write_bytes(b'title,text\n"How to A","Do it"\n"How to B","caf\xe9"\n')
    with pytest.raises(CommandError, match=f"^{re.escape(str(csv_path))}:3: not UTF-8 text"):
        call_command("curate", name="w", tokenizer="none", wikihow=[str(csv_path)])
    assert not Prompt.objects.exists() and not TrainingDataset.objects.exists()


def test_size_limits_refuse_with_the_line_and_the_limit(tmp_path, settings):
    settings.IMPORT_MAX_PROMPT_CHARS = 50
    settings.IMPORT_MAX_RESPONSE_CHARS = 20
    settings.IMPORT_MAX_FILE_BYTES = 400
    path = tmp_path / "p.jsonl"
    rows = [
        {"id": "a", "messages": [{"role": "user", "content": "short"}]},
        {"id": "b", "messages": [{"role": "user", "content": "x" * 51}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(CommandError, match=f"^{re.escape(str(path))}:2: the prompt is 51 characters long .*: 50\\)"):
        call_command("import_prompts", path, set_name="s")
    path.write_text(json.dumps(rows[0]) + "\n")
    call_command("import_prompts", path, set_name="s")
    System.objects.create(name="b", backend="imported")
    answers = tmp_path / "r.jsonl"
    answers.write_text(json.dumps({"id": "a", "response": "y" * 21}) + "\n")
    with pytest.raises(CommandError, match=f"^{re.escape(str(answers))}:1: the response is 21 characters long"):
        call_command("import_responses", answers, system="b")
    big = tmp_path / "big.jsonl"
    big.write_text((json.dumps(rows[0]) + "\n") * 10)
    with pytest.raises(CommandError, match=f"^{re.escape(str(big))}: 0.0 MB is more than IMPORT_MAX_FILE_BYTES"):
        call_command("import_prompts", big, set_name="t")
    assert Prompt.objects.count() == 1 and not Response.objects.exists()
