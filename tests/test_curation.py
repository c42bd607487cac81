"""Curation: the importers on small files in each source's real format, the paper's filters on
hand-made samples, sampling with temperature and quotas."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from html import escape
from pathlib import Path

import pytest

from training.curation import filters
from training.curation.curate import SourceSpec, curate, sample_with_temperature, token_statistics
from training.curation.html import html_to_markdown
from training.curation.sources import (
    Candidate,
    CurationError,
    read_lima,
    read_ours,
    read_reddit,
    read_stackexchange,
    read_wikihow,
)

RNG = random.Random(0)
LONG_ANSWER = (
    "<p>Use a <a href='https://example.com'>context manager</a> so the file is closed even when an error "
    "happens.</p><pre><code>with open(path) as handle:\n    data = handle.read()\n</code></pre>"
    "<ul><li>It closes the file.</li><li>It is shorter.</li></ul><img src='x.png'/>" + "<p>" + "Closing matters. " * 80
)


def row(**attrs) -> str:
    return (
        "  <row "
        + " ".join(f'{k}="{escape(str(v), quote=True).replace(chr(10), "&#xA;")}"' for k, v in attrs.items())
        + " />\n"
    )


def write_posts(path: Path, rows: list[str]) -> Path:
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + "".join(rows) + "</posts>\n")
    return path


def cand(answer: str, score: int | None = 12, **kw) -> Candidate:
    return Candidate(source="s", group="g", external_id="x", where="f:1", answer=answer, score=score, **kw)


# -- filters --------------------------------------------------------------------------------------


def test_min_score_keeps_10_and_rejects_9():
    assert filters.min_score(10)(cand("a", score=10), RNG) is None
    assert filters.min_score(10)(cand("a", score=9), RNG) == "score 9 < 10"


def test_answer_length_is_1200_to_4096_characters():
    check = filters.answer_length(1200, 4096)
    assert check(cand("x" * 1200), RNG) is None and check(cand("x" * 4096), RNG) is None
    assert check(cand("x" * 1199), RNG) == "answer too short (1199 < 1200 characters)"
    assert check(cand("x" * 4097), RNG) == "answer too long (4097 > 4096 characters)"


@pytest.mark.parametrize(
    "answer, verdict",
    [
        ("I think the answer is 4.", "first person ('I')"),
        ("In my experience it works.", "first person ('my')"),
        ("Let me explain.", "first person ('me')"),
        ("The value is 4. Use `I = 3` in code.", None),  # code does not count
        ("In Python, `my_list` is fine.\n```\nmy = 1\n```", None),
        ("Immediate mode is fine; mine-craft aside.", "first person ('mine')"),
        ("Immediate mode is fine.", None),
    ],
)
def test_first_person_answers_are_rejected(answer, verdict):
    assert filters.no_first_person(cand(answer), RNG) == verdict


@pytest.mark.parametrize(
    "answer, rejected",
    [
        ("As mentioned above, use a lock.", True),
        ("Other answers miss the point.", True),
        ("This is a known Stack Exchange meme.", True),
        ("See the accepted answer for details.", True),
        ("Use a lock around the counter.", False),
    ],
)
def test_answers_that_refer_to_other_answers_are_rejected(answer, rejected):
    reason = filters.no_references_to_other_answers(cand(answer), RNG)
    assert (reason is not None) == rejected
    if rejected:
        assert reason.startswith("refers to other answers")


def test_html_is_stripped_but_code_blocks_and_lists_are_kept():
    text = html_to_markdown(LONG_ANSWER)
    assert "https://example.com" not in text and "<" not in text and "x.png" not in text
    assert "context manager" in text  # a link keeps its text
    assert "```\nwith open(path) as handle:\n    data = handle.read()\n" in text  # indentation kept
    assert "- It closes the file.\n- It is shorter." in text
    assert html_to_markdown("<ol><li>one</li><li>two &amp; three</li></ol>") == "1. one\n2. two & three"


def test_the_prompt_is_the_title_or_the_body_at_random():
    picks = Counter()
    rng = random.Random(5)
    for _ in range(200):
        candidate = cand("answer", title="Title?", body="The body.")
        filters.title_or_body(candidate, rng)
        picks[candidate.messages[0]["content"]] += 1
        assert candidate.messages[1] == {"role": "assistant", "content": "answer"}
    assert set(picks) == {"Title?", "The body."} and 70 < picks["Title?"] < 130


def test_wikihow_this_article_openings_are_rewritten():
    candidate = cand("This article explains how to boil an egg. Put it in water.", title="How to Boil an Egg")
    assert filters.wikihow_rewrite(candidate, RNG) is None
    assert candidate.messages == [
        {"role": "user", "content": "How to Boil an Egg"},
        {"role": "assistant", "content": "The following answer explains how to boil an egg. Put it in water."},
    ]
    untouched = cand("Boil water. This article is short.", title="t")
    filters.wikihow_rewrite(untouched, RNG)
    assert untouched.answer == "Boil water. This article is short."


def test_writing_prompts_lose_their_tag_and_plain_text_loses_links():
    candidate = cand("Once upon a time ![pic](http://i.imgur.com/x.png) [a link](http://x.y) http://z.q end" * 12)
    candidate.title = "[WP] A dragon opens a bakery"
    assert filters.apply(candidate, filters.REDDIT, RNG) is None
    assert candidate.messages[0]["content"] == "A dragon opens a bakery"
    assert candidate.answer.startswith("Once upon a time  a link  endOnce upon")


# -- importers ------------------------------------------------------------------------------------


def test_stack_exchange_pairs_each_question_with_its_top_answer(tmp_path):
    posts = write_posts(
        tmp_path / "Posts.xml",
        [
            row(Id=1, PostTypeId=1, Score=5, Title="How do I close files?", Body="<p>Files stay open.</p>"),
            row(Id=2, PostTypeId=2, ParentId=1, Score=3, Body="<p>low</p>"),
            row(Id=3, PostTypeId=2, ParentId=1, Score=15, Body=LONG_ANSWER),
            row(Id=4, PostTypeId=1, Score=1, Title="Unanswered", Body="<p>?</p>"),
            row(Id=6, PostTypeId=2, ParentId=5, Score=11, Body="<p>answer before its question</p>"),
            row(Id=5, PostTypeId=1, Score=1, Title="Late question", Body="<p>body</p>"),
            row(Id=7, PostTypeId=2, ParentId=1, Score=15, Body="<p>same score, later</p>"),
        ],
    )
    found = {c.external_id: c for c in read_stackexchange(posts, "unix.stackexchange.com", "stackexchange_other")}
    assert set(found) == {"unix.stackexchange.com/1", "unix.stackexchange.com/5"}
    first = found["unix.stackexchange.com/1"]
    assert (first.score, first.meta["answer"], first.source, first.group) == (
        15,
        "3",
        "stackexchange_other",
        "unix.stackexchange.com",
    )
    assert first.title == "How do I close files?" and first.where == f"{posts}:5"
    assert found["unix.stackexchange.com/5"].answer == "<p>answer before its question</p>"


@pytest.mark.parametrize(
    "bad, reason",
    [
        ('  <row Id="9" PostTypeId="2" ParentId="1" Score="x" Body="b" />\n', "Score must be a whole number"),
        ('  <row Id="9" PostTypeId="2" Score="1" Body="b" />\n', "answer without ParentId"),
        ('  <row Id="9" PostTypeId="2" ParentId="1" Body="<b>" />\n', "malformed XML"),
        ("  <comment/>\n", "expected a <row .../> element"),
        ('  <row PostTypeId="1" />\n', "row without Id"),
    ],
)
def test_stack_exchange_malformed_rows_name_file_and_line(tmp_path, bad, reason):
    posts = write_posts(tmp_path / "Posts.xml", [row(Id=1, PostTypeId=1, Title="t", Body="b"), bad])
    with pytest.raises(CurationError, match=f"{posts}:4: .*{reason}"):
        list(read_stackexchange(posts, "site"))


def test_wikihow_csv_reads_title_and_text_and_reports_bad_rows(tmp_path):
    path = tmp_path / "wikihowAll.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["headline", "title", "text"])
        writer.writerow(["h", "How to Boil an Egg", "This article shows how.\nPut the egg in water."])
        writer.writerow(["h", "How to Tie a Tie", "Cross the wide end over."])
    found = list(read_wikihow(path))
    assert [c.title for c in found] == ["How to Boil an Egg", "How to Tie a Tie"]
    assert found[0].answer.startswith("This article shows how.\n") and found[1].where == f"{path}:4"

    bad = tmp_path / "bad.csv"
    bad.write_text('title,text\n"How to X","Do it"\n"How to Y"\n')
    with pytest.raises(CurationError, match=f"{bad}:3: expected 2 fields"):
        list(read_wikihow(bad))
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("headline,body\na,b\n")
    with pytest.raises(CurationError, match=f"{wrong}:1: missing column\\(s\\) title, text"):
        list(read_wikihow(wrong))


def test_reddit_joins_a_submission_with_its_top_level_top_comment(tmp_path):
    submissions = tmp_path / "RS.jsonl"
    comments = tmp_path / "RC.jsonl"
    submissions.write_text(
        json.dumps({"id": "a1", "subreddit": "WritingPrompts", "title": "[WP] Cats rule", "score": 50})
        + "\n"
        + json.dumps({"id": "a2", "subreddit": "WritingPrompts", "title": "[WP] Nobody answered"})
        + "\n"
    )
    comments.write_text(
        "\n".join(
            json.dumps(c)
            for c in [
                {"id": "c1", "parent_id": "t3_a1", "link_id": "t3_a1", "body": "Short one.", "score": 5},
                {"id": "c2", "parent_id": "t3_a1", "link_id": "t3_a1", "body": "The best story.", "score": 90},
                {"id": "c3", "parent_id": "t1_c2", "link_id": "t3_a1", "body": "A reply, higher", "score": 400},
                {"id": "c4", "parent_id": "t3_a1", "link_id": "t3_a1", "body": "[deleted]", "score": 999},
            ]
        )
        + "\n"
    )
    found = list(read_reddit([comments, submissions]))
    assert len(found) == 1
    story = found[0]
    assert (story.source, story.title, story.answer, story.score) == (
        "reddit_writingprompts",
        "[WP] Cats rule",
        "The best story.",
        90,
    )
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"id": "a1", "title": "t"}) + "\n{not json\n")
    with pytest.raises(CurationError, match=f"{broken}:2: not valid JSON"):
        list(read_reddit([broken]))
    neither = tmp_path / "neither.jsonl"
    neither.write_text(json.dumps({"id": "z", "text": "?"}) + "\n")
    with pytest.raises(CurationError, match=f"{neither}:1: neither a submission"):
        list(read_reddit([neither]))


def test_lima_and_our_jsonl_give_conversations(tmp_path):
    lima = tmp_path / "train.jsonl"
    lima.write_text(
        json.dumps({"conversations": ["Hi?", "Hello.", "More?", "Sure."], "source": "multi_turn"})
        + "\n"
        + json.dumps({"conversations": ["Q", "A"], "source": "wikihow"})
        + "\n"
    )
    found = list(read_lima(lima))
    assert found[0].messages[-1] == {"role": "assistant", "content": "Sure."} and len(found[0].messages) == 4
    assert [c.source for c in found] == ["authors_dialogue", "wikihow"]
    test_row = tmp_path / "test.jsonl"
    test_row.write_text(json.dumps({"conversations": ["Only a prompt"], "source": "AskReddit"}) + "\n")
    (only,) = read_lima(test_row)
    assert (only.source, only.problem) == ("lima_askreddit", "no answer (a single utterance: a test prompt?)")

    shipped = list(read_ours(Path("data/train.jsonl")))
    assert len(shipped) == 61 and all(c.messages[-1]["role"] == "assistant" for c in shipped)
    assert any(len(c.messages) > 2 for c in shipped)  # the multi-turn chains
    ours = tmp_path / "ours.jsonl"
    ours.write_text(json.dumps({"id": "x", "messages": [{"role": "user", "content": "no answer"}]}) + "\n")
    with pytest.raises(CurationError, match=f"{ours}:1: the last message must be the assistant's"):
        list(read_ours(ours))


# -- sampling, quotas, statistics -----------------------------------------------------------------


def test_temperature_3_flattens_the_exchanges_towards_small_ones():
    groups = {"big": list(range(900)), "small": list(range(1000, 1100))}
    for temperature, expected in ((1.0, 0.1), (3.0, 100 ** (1 / 3) / (900 ** (1 / 3) + 100 ** (1 / 3)))):
        shares = []
        for seed in range(20):
            chosen = sample_with_temperature(groups, 50, temperature, random.Random(seed))
            assert len(set(chosen)) == 50
            shares.append(sum(1 for x in chosen if x >= 1000) / 50)
        assert sum(shares) / len(shares) == pytest.approx(expected, abs=0.05)


def test_curate_filters_samples_within_quotas_and_counts_reasons(tmp_path):
    specs = []
    for site in ("math", "physics"):
        rows = []
        for q in range(6):
            qid = q * 2 + 1
            rows.append(row(Id=qid, PostTypeId=1, Title=f"{site} Q{qid}?", Body="<p>Why?</p>"))
            body = "<p>I believe so.</p>" + LONG_ANSWER if q == 0 else LONG_ANSWER
            rows.append(row(Id=qid + 1, PostTypeId=2, ParentId=qid, Score=9 if q == 1 else 20, Body=body))
        path = write_posts(tmp_path / f"{site}.xml", rows)
        specs.append(SourceSpec("stackexchange", (path,), site=site, group="stem"))
    result = curate(specs, quotas={"stackexchange_stem": 5}, seed=1)
    assert len(result.kept) == 5
    assert result.read["stackexchange_stem"] == 12 and result.passed["stackexchange_stem"] == 8
    assert result.reasons["stackexchange_stem"] == Counter({"first person": 2, "score": 2})
    assert {reason for _, reason in result.rejected} == {"first person ('I')", "score 9 < 10"}
    assert {c.group for c in result.kept} == {"math", "physics"}
    with pytest.raises(CurationError, match="--quota names source\\(s\\) with no example: wikihow"):
        curate(specs, quotas={"wikihow": 5})
    words = token_statistics(
        [c.messages for c in result.kept], [c.source for c in result.kept], lambda t: len(t.split())
    )
    assert words["stackexchange_stem"]["examples"] == 5
    assert words["stackexchange_stem"]["avg_output_tokens"] == len(result.kept[0].answer.split())
