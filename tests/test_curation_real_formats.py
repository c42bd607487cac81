"""Curation on files in the shapes they are published in (written here, never copied): a Stack
Exchange Posts.xml with a byte order mark and CRLF line endings, the LIMA training file with its
odd rows, Pushshift / Arctic Shift Reddit dumps as separate .zst submission and comment files."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from html import escape
from pathlib import Path

import pytest
import zstandard
from django.core.management import CommandError, call_command

from evalsite.finetune.models import TrainingDataset
from evalsite.finetune.services import table_1
from training.curation import filters
from training.curation.curate import SourceSpec, curate
from training.curation.sources import CurationError, read_reddit, read_stackexchange

ANSWER_HTML = (
    "<p>Use a context manager (see http://docs.python.org/3/reference/compound_stmts.html#with), "
    "so the file is closed even when an error happens.</p>\r\n<pre><code>with open(path) as f:\r\n"
    "    data = f.read()\r\n</code></pre>" + "<p>" + "Closing matters. " * 80 + "</p>"
)


def dump_row(**attrs) -> str:
    # the dumps escape newlines inside attributes as &#xD;&#xA; and quote with "
    text = " ".join(
        f'{k}="{escape(str(v), quote=True).replace(chr(13), "&#xD;").replace(chr(10), "&#xA;")}"'
        for k, v in attrs.items()
    )
    return f"  <row {text} />\r\n"


def published_posts(path: Path, rows: list[str], *, closed: bool = True) -> Path:
    """As the dumps are: a UTF-8 byte order mark, an XML declaration, CRLF line endings."""
    text = '<?xml version="1.0" encoding="utf-8"?>\r\n<posts>\r\n' + "".join(rows) + ("</posts>" if closed else "")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    return path


REAL_ROWS = [
    dump_row(
        Id=1,
        PostTypeId=1,
        AcceptedAnswerId=999,  # points at a row that is not in the file
        CreationDate="2010-07-28T19:04:21.300",
        Score=-2,
        ViewCount=1200,
        Body="<p>My files stay open.\r\nWhy?</p>",
        OwnerUserId=12,
        LastEditorUserId=-1,
        LastActivityDate="2019-01-01T00:00:00.000",
        Title="How do I close files?",
        Tags="|python|files|",
        AnswerCount=2,
        CommentCount=0,
        ClosedDate="2011-01-01T00:00:00.000",
        ContentLicense="CC BY-SA 2.5",
    ),
    dump_row(
        Id=2,
        PostTypeId=2,
        ParentId=1,
        CreationDate="2010-07-28T19:10:00.000",
        Score=31,
        Body=ANSWER_HTML,
        OwnerDisplayName="anon",
        CommunityOwnedDate="2012-03-03T00:00:00.000",
        ContentLicense="CC BY-SA 3.0",
    ),
    dump_row(Id=3, PostTypeId=2, ParentId=1, Score=-5, Body="<p>Never mind.</p>"),
    dump_row(Id=4, PostTypeId=5, Score=0, Body="<p>a tag wiki excerpt</p>"),  # other post types are skipped
]


def test_a_published_posts_xml_with_bom_and_crlf_is_read(tmp_path):
    posts = published_posts(tmp_path / "Posts.xml", REAL_ROWS)
    found = list(read_stackexchange(posts, "python.stackexchange.com"))
    assert [c.external_id for c in found] == ["python.stackexchange.com/1"]
    question = found[0]
    assert (question.score, question.meta["answer"], question.where) == (31, "2", f"{posts}:4")
    assert question.title == "How do I close files?" and "Why?" in question.body

    result = curate([SourceSpec("stackexchange", (posts,), site="python.stackexchange.com")])
    (kept,) = result.kept
    assert "with open(path) as f:\n    data = f.read()" in kept.answer  # code kept, CRLF gone
    assert "http" not in kept.answer and "docs.python.org" not in kept.answer  # the bare URL went


@pytest.mark.parametrize(
    "rows, closed, line, reason",
    [
        (REAL_ROWS, False, 7, "the file ends inside <posts> \\(no closing </posts>: cut short\\?\\)"),
        ([REAL_ROWS[0], '  <row Id="9" PostTypeId="2" Body="<b>" />\r\n'], True, 4, "malformed XML"),
        ([REAL_ROWS[0], "  <comment/>\r\n"], True, 4, "expected a <row .../> element, got <comment>"),
        ([REAL_ROWS[0], '  <row PostTypeId="1" />\r\n'], True, 4, "row without Id"),
    ],
)
def test_a_broken_posts_xml_names_its_line(tmp_path, rows, closed, line, reason):
    posts = published_posts(tmp_path / "Posts.xml", rows, closed=closed)
    with pytest.raises(CurationError, match=f"{posts}:{line}: {reason}"):
        list(read_stackexchange(posts, "site"))


def test_posts_xml_with_bad_bytes_or_entities_is_refused_with_its_line(tmp_path):
    posts = tmp_path / "Posts.xml"
    latin1 = b'  <row Id="1" PostTypeId="1" Title="caf\xe9" />\r\n'
    posts.write_bytes(b'\xef\xbb\xbf<?xml version="1.0"?>\r\n<posts>\r\n' + latin1)
    with pytest.raises(CurationError, match=f"{posts}:3: malformed XML \\(not well-formed"):
        list(read_stackexchange(posts, "site"))
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?>\n<!DOCTYPE posts [<!ENTITY a "aaaaaaaaaa">]>\n<posts>\n</posts>\n')
    with pytest.raises(CurationError, match=f"{bomb}:2: entity declarations are not allowed"):
        list(read_stackexchange(bomb, "site"))


# -- the published LIMA training file ---------------------------------------------------------------

LIMA_ROWS = [
    {"conversations": ["Why is the sky blue?", "Because of Rayleigh scattering."], "source": "stackexchange"},
    {"conversations": ["How to Boil an Egg", "Put it in water."], "source": "wikihow"},
    {"conversations": ["[WP] Cats rule", "Once upon a time."], "source": "reddit"},
    {"conversations": ["Translate 'chat'.", "cat"], "source": "nlp"},
    {"conversations": ["Write a haiku.", "Leaves fall."], "source": "authors"},
    {"conversations": ["Hi", "Hello!", "Tell me more.", "Sure.", "And then?"], "source": "multi_turn"},
    {"conversations": ["Only a prompt"], "source": "authors"},
    {"conversations": "not a list", "source": "authors"},
]


def write_lima(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in LIMA_ROWS))
    return path


def test_lima_rows_that_cannot_be_examples_are_rejected_or_trimmed_not_fatal(tmp_path):
    lima = write_lima(tmp_path / "train.jsonl")
    result = curate([SourceSpec("lima", (lima,))])
    by_source = {c.source: c for c in result.kept}
    assert set(by_source) == {
        "stackexchange",
        "wikihow",
        "reddit_writingprompts",
        "natural_instructions",
        "authors",
        "authors_dialogue",
    }
    chain = by_source["authors_dialogue"]
    assert [m["role"] for m in chain.messages] == ["user", "assistant", "user", "assistant"]
    assert chain.messages[-1]["content"] == "Sure." and "dropped" in chain.meta["trimmed"]
    assert result.trimmed["authors_dialogue"] == 1
    assert dict(result.reasons["authors"]) == {
        "no answer": 1,
        "conversations is not a non-empty list of non-empty texts": 1,
    }
    described = "\n".join(result.describe())
    assert "authors rejected: " in described and "authors_dialogue trimmed to end on an answer: 1" in described


def test_curate_lima_sets_its_rows_beside_the_papers_table_1(db, tmp_path, capsys):
    call_command("curate", name="lima", lima=[str(write_lima(tmp_path / "train.jsonl"))], tokenizer="none")
    out = capsys.readouterr().out
    assert "dataset lima: 6 examples" in out and "authors rejected: " in out
    dataset = TrainingDataset.objects.get(name="lima")
    rows = {r["source"]: r for r in table_1(dataset)}
    assert (rows["wikihow"]["examples"], rows["wikihow"]["paper_examples"]) == (1, 200)
    assert (rows["stackexchange"]["examples"], rows["stackexchange"]["paper_examples"]) == (1, 400)
    assert rows["reddit_writingprompts"]["paper_examples"] == 150
    assert rows["natural_instructions"]["paper_examples"] == 50
    assert dataset.manifest["trimmed"] == {"authors_dialogue": 1}
    assert dataset.manifest["rejected_by_reason"]["authors"]["no answer"] == 1


# -- Reddit: separate RS / RC dumps, compressed ----------------------------------------------------

STORY = "The dragon opened the bakery at dawn. " * 12  # ~460 characters


def submissions() -> list[dict]:
    extra = {"author": "someone", "created_utc": 1609459200, "num_comments": 3, "over_18": False, "url": "x"}
    return [
        {"id": "s1", "subreddit": "WritingPrompts", "title": "[WP] A dragon opens a bakery", "score": 900, **extra},
        {"id": "s2", "subreddit": "AskReddit", "title": "What is a tip? see https://example.com/x", "score": 50},
        {"id": "s3", "subreddit": "funny", "title": "A cat", "score": 9000, **extra},
        {"id": "s4", "subreddit": "WritingPrompts", "title": "[WP] Low", "score": 3},
    ]


def comments() -> list[dict]:
    return [
        {"id": "c1", "link_id": "t3_s1", "parent_id": "t3_s1", "body": STORY, "score": 120, "subreddit": "x"},
        {"id": "c2", "link_id": "t3_s1", "parent_id": "t1_c1", "body": STORY + " reply", "score": 4000},
        {"id": "c3", "link_id": "t3_s2", "parent_id": "t3_s2", "body": "lol", "score": 300},
        {"id": "c4", "link_id": "t3_s3", "parent_id": "t3_s3", "body": STORY, "score": 50},
        {"id": "c5", "link_id": "t3_s4", "parent_id": "t3_s4", "body": STORY + " http://imgur.com/a", "score": 4},
    ]


def ndjson(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_reddit_reads_zst_submission_and_comment_dumps_and_joins_them(tmp_path):
    rs = tmp_path / "RS_2021-01.zst"
    rc = tmp_path / "RC_2021-01.zst"
    rs.write_bytes(zstandard.ZstdCompressor().compress(ndjson(submissions())))
    rc.write_bytes(zstandard.ZstdCompressor().compress(ndjson(comments())))
    stats: Counter = Counter()
    found = {c.external_id: c for c in read_reddit([rc, rs], stats=stats)}
    assert set(found) == {"reddit/s1", "reddit/s2", "reddit/s4"}  # r/funny is not asked for
    assert found["reddit/s1"].answer == STORY and found["reddit/s1"].score == 120  # the reply does not count
    assert stats["submissions read"] == 4 and stats["comments read"] == 5
    assert stats["submissions in other subreddits (skipped)"] == 1
    assert stats["replies to comments (not top-level)"] == 1

    result = curate([SourceSpec("reddit", (rs, rc))])
    kept = {c.external_id: c for c in result.kept}
    assert set(kept) == {"reddit/s1"}
    assert kept["reddit/s1"].messages[0]["content"] == "A dragon opens a bakery"
    assert dict(result.reasons["reddit_askreddit"]) == {"answer too short": 1}
    assert dict(result.reasons["reddit_writingprompts"]) == {"score": 1}


def test_reddit_gz_and_plain_files_and_the_subreddit_choice(tmp_path):
    rs = tmp_path / "RS.ndjson.gz"
    rs.write_bytes(gzip.compress(ndjson(submissions())))
    rc = tmp_path / "RC.ndjson"
    rc.write_bytes(ndjson(comments()))
    found = list(read_reddit([rs, rc], subreddits=["funny"]))
    assert [c.external_id for c in found] == ["reddit/s3"]


def test_bare_urls_go_the_way_links_do_from_prompt_and_answer():
    candidate = filters.Candidate(
        source="reddit_askreddit",
        group="AskReddit",
        external_id="x",
        where="f:1",
        title="What is a tip? see https://example.com/x",
        answer="Read www.example.org/page, then <http://example.net/a_(b)> and [this](http://x.y/z) too. " * 12,
        score=50,
    )
    assert filters.apply(candidate, filters.REDDIT, filters.random.Random(0)) is None
    assert candidate.messages[0]["content"] == "What is a tip? see"
    assert "http" not in candidate.answer and "www." not in candidate.answer
    assert candidate.answer.startswith("Read , then  and this too.")


def test_curate_says_how_much_was_read_and_joined_when_nothing_passes(db, tmp_path, capsys):
    rs = tmp_path / "RS.zst"
    rs.write_bytes(zstandard.ZstdCompressor().compress(ndjson(submissions())))
    rc = tmp_path / "RC.zst"
    other = [dict(c, link_id="t3_zz", parent_id="t3_zz") for c in comments()]
    rc.write_bytes(zstandard.ZstdCompressor().compress(ndjson(other)))
    with pytest.raises(CommandError, match="no example passed the filters"):
        call_command("curate", name="empty", reddit=[str(rs), str(rc)], tokenizer="none")
    out = capsys.readouterr().out
    assert "submissions read 4" in out and "comments read 5" in out and "submissions joined to a comment" not in out
    assert "no input row became a candidate example" in out
    assert not TrainingDataset.objects.exists()
    broken = tmp_path / "RC_broken.zst"
    broken.write_bytes(b"\x28\xb5\x2f\xfd garbage")
    with pytest.raises(CommandError, match=f"{broken}: cannot be read"):
        call_command("curate", name="broken", reddit=[str(broken)], tokenizer="none")
