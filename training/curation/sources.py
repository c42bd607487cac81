"""Importers for the paper's sources, streaming: a file is read line by line (never whole), and
only what the next step needs is kept (for Stack Exchange and Reddit, the id and score of each
question's best answer). A malformed line raises CurationError("FILE:LINE: reason").

Every importer yields Candidates: a prompt/answer pair still to be filtered (filters.py)."""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from xml.parsers import expat

import zstandard

from generation.chat import alternating
from generation.records import RecordError, json_records
from generation.text import unstorable


class CurationError(ValueError):
    """Bad input; the message starts with FILE:LINE."""


@dataclass
class Candidate:
    source: str  # the Table 1 row: stackexchange_stem, wikihow, reddit_writingprompts, ...
    group: str  # what sampling spreads over: the exchange, the wikiHow category, the subreddit
    external_id: str
    where: str  # FILE:LINE of the answer (or the row)
    title: str = ""
    body: str = ""  # the question's description
    answer: str = ""
    score: int | None = None
    messages: list[dict[str, str]] | None = None  # set by the filters (or given by LIMA/our JSONL)
    meta: dict[str, Any] = field(default_factory=dict)
    problem: str = ""  # why the row cannot become an example at all (rejected before any filter)

    @property
    def prompt(self) -> str:
        return self.messages[0]["content"] if self.messages else self.title


def open_binary(path: Path) -> BinaryIO:
    """A file's bytes, decompressed on the fly when it ends in .zst (Pushshift / Arctic Shift dumps;
    their frames need zstd's 2 GiB window) or .gz. Raises CurationError naming the file."""
    try:
        handle: BinaryIO = path.open("rb")
    except OSError as exc:
        raise CurationError(f"{path}: {exc.strerror}") from None
    if path.suffix == ".zst":
        reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(handle, closefd=True)
        return io.BufferedReader(reader, 1 << 20)  # readline() needs a buffer
    if path.suffix == ".gz":
        return gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[return-value]
    return handle


def _int(where: str, value: str | None, name: str) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CurationError(f"{where}: {name} must be a whole number, not {value!r}") from None


# -- Stack Exchange data dump: Posts.xml, <posts> with one <row .../> per post ---------------------
#
# The published dumps (archive.org's stackexchange collection) start with a UTF-8 byte order mark,
# use CRLF line endings, carry many attributes we do not use (CommunityOwnedDate, ClosedDate,
# OwnerDisplayName, LastEditorUserId="-1", ...), negative scores, and AcceptedAnswerId values that
# point at rows not in the file. They are read with expat, the streaming parser under ElementTree,
# fed in blocks: memory stays bounded on multi-GB dumps and a real error carries its line.

_XML_BLOCK = 1 << 20


def _stack_rows(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    rows: list[tuple[str, dict[str, str]]] = []
    depth = 0
    parser = expat.ParserCreate()
    parser.buffer_text = True

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        where = f"{path}:{parser.CurrentLineNumber}"
        if depth == 1:
            if name != "posts":
                raise CurationError(f"{where}: expected <posts> (a Stack Exchange Posts.xml), got <{name}>")
            return
        if depth > 2 or name != "row":
            raise CurationError(f"{where}: expected a <row .../> element, got <{name}>")
        for needed in ("Id", "PostTypeId"):
            if needed not in attrs:
                raise CurationError(f"{where}: row without {needed}")
        rows.append((where, attrs))

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1

    def no_entities(*args: object) -> None:
        # a dump declares no entities; a file that does is refused (no entity expansion bombs)
        raise CurationError(f"{path}:{parser.CurrentLineNumber}: entity declarations are not allowed")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.EntityDeclHandler = no_entities
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CurationError(f"{path}: {exc.strerror}") from None
    with handle:
        while True:
            block = handle.read(_XML_BLOCK)
            try:
                parser.Parse(block, not block)
            except expat.ExpatError as exc:
                if exc.code == expat.errors.codes[expat.errors.XML_ERROR_NO_ELEMENTS] and depth:
                    raise CurationError(
                        f"{path}:{exc.lineno}: the file ends inside <posts> (no closing </posts>: cut short?)"
                    ) from None
                reason = f"{expat.errors.messages[exc.code]}, column {exc.offset + 1}"
                raise CurationError(f"{path}:{exc.lineno}: malformed XML ({reason})") from None
            yield from rows
            rows.clear()
            if not block:
                return


def read_stackexchange(path: Path, site: str, source: str = "stackexchange_stem") -> Iterator[Candidate]:
    """Questions with their top answer (highest score; the first posted on a tie). Two passes:
    the first keeps each question's best (score, answer id), the second joins texts."""
    best: dict[str, tuple[int, int]] = {}
    for where, row in _stack_rows(path):
        if row["PostTypeId"] == "2":
            if "ParentId" not in row:
                raise CurationError(f"{where}: answer without ParentId")
            score = _int(where, row.get("Score"), "Score")
            answer_id = _int(where, row["Id"], "Id")
            current = best.get(row["ParentId"])
            if current is None or (score, -answer_id) > (current[0], -current[1]):
                best[row["ParentId"]] = (score, answer_id)
    questions: dict[str, dict[str, str]] = {}
    answers: dict[str, tuple[str, dict[str, str]]] = {}
    for where, row in _stack_rows(path):
        kind = row["PostTypeId"]
        if kind == "1" and row["Id"] in best:
            question = {"title": row.get("Title", ""), "body": row.get("Body", "")}
            if row["Id"] in answers:  # its answer came first
                yield _stack_candidate(site, source, row["Id"], question, *answers.pop(row["Id"]))
            else:
                questions[row["Id"]] = question
        elif kind == "2" and best.get(row["ParentId"], (0, -1))[1] == int(row["Id"]):
            if row["ParentId"] in questions:
                yield _stack_candidate(site, source, row["ParentId"], questions.pop(row["ParentId"]), where, row)
            else:
                answers[row["ParentId"]] = (where, row)


def _stack_candidate(
    site: str, source: str, question_id: str, question: dict[str, str], where: str, answer: dict[str, str]
) -> Candidate:
    return Candidate(
        source=source,
        group=site,
        external_id=f"{site}/{question_id}",
        where=where,
        title=question["title"],
        body=question["body"],
        answer=answer.get("Body", ""),
        score=int(answer.get("Score", "0")),
        meta={"site": site, "question": question_id, "answer": answer["Id"], "html": True},
    )


# -- wikiHow CSV: title and text columns (category optional) --------------------------------------


def read_wikihow(path: Path) -> Iterator[Candidate]:
    csv.field_size_limit(1 << 28)

    def decoded(handle: BinaryIO) -> Iterator[str]:
        # each line decoded on its own, so that a bad byte is named by its line
        for lineno, raw in enumerate(handle, start=1):
            try:
                yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise CurationError(f"{path}:{lineno}: not UTF-8 text (byte {exc.start + 1})") from None

    with open_binary(path) as handle:
        reader = csv.DictReader(decoded(handle))
        columns = reader.fieldnames or []
        missing = [c for c in ("title", "text") if c not in columns]
        if missing:
            raise CurationError(f"{path}:1: missing column(s) {', '.join(missing)} (have: {', '.join(columns)})")
        try:
            for n, row in enumerate(reader, start=1):
                where = f"{path}:{reader.line_num}"
                if None in row or any(row[c] is None for c in columns):
                    raise CurationError(f"{where}: expected {len(columns)} fields")
                problem = unstorable(row)
                if problem:
                    raise CurationError(f"{where}: {problem}")
                title = row["title"].strip()
                yield Candidate(
                    source="wikihow",
                    group=(row.get("category") or "wikihow").strip(),
                    external_id=f"wikihow/{n}",
                    where=where,
                    title=title,
                    answer=row["text"],
                )
        except csv.Error as exc:
            raise CurationError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


def _json_rows(path: Path) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(FILE:LINE, line number, object) of each record of a JSON-lines file, compressed or not
    (generation.records: UTF-8, objects, storable texts)."""
    with open_binary(path) as handle:
        try:
            for lineno, obj in json_records(path, handle):
                yield f"{path}:{lineno}", lineno, obj
        except RecordError as exc:
            raise CurationError(str(exc)) from None
        except (OSError, EOFError, zstandard.ZstdError) as exc:
            raise CurationError(f"{path}: cannot be read ({exc})") from None


# -- Reddit: Pushshift / Arctic Shift NDJSON dumps ------------------------------------------------
#
# Submissions (RS_*, with a title) and comments (RC_*, with a body) come as separate files, in
# practice .zst-compressed. A comment belongs to a submission through link_id ("t3_<id>"); it is
# top-level when its parent_id is that same link. The paper used r/WritingPrompts (train) and
# r/AskReddit (test prompts); other subreddits are skipped while reading and counted.

_GONE = ("[deleted]", "[removed]", "")
REDDIT_SUBREDDITS = ("AskReddit", "WritingPrompts")


def _reddit_rows(paths: Iterable[Path]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in paths:
        for where, _, obj in _json_rows(path):
            if "id" not in obj:
                raise CurationError(f"{where}: expected an object with an id")
            if "title" in obj:
                yield where, "submission", obj
            elif "body" in obj and ("link_id" in obj or "parent_id" in obj):
                yield where, "comment", obj
            else:
                raise CurationError(f"{where}: neither a submission (title) nor a comment (body, link_id)")


def _top_level_link(comment: dict[str, Any]) -> str | None:
    """The submission id of a top-level comment (its parent is the submission), else None."""
    parent = str(comment.get("parent_id") or "")
    link = str(comment.get("link_id") or parent)
    if not parent.startswith("t3_") or parent != link:
        return None
    return link[3:]


def read_reddit(
    paths: Iterable[Path], subreddits: Iterable[str] = REDDIT_SUBREDDITS, stats: Counter | None = None
) -> Iterator[Candidate]:
    """Each submission of the given subreddits with its top-scoring top-level comment. Submissions
    and comments may be in one file or several, in any order. ``stats`` counts what was read and
    how much of it joined, so that an empty result can say why."""
    paths = list(paths)
    wanted = {s.lower() for s in subreddits}
    stats = stats if stats is not None else Counter()
    best: dict[str, tuple[int, str]] = {}
    for where, kind, obj in _reddit_rows(paths):
        if kind == "submission":
            subreddit = str(obj.get("subreddit", "")).lower()
            stats["submissions read"] += 1
            if wanted and subreddit not in wanted:
                stats["submissions in other subreddits (skipped)"] += 1
            continue
        stats["comments read"] += 1
        link = _top_level_link(obj)
        if link is None:
            stats["replies to comments (not top-level)"] += 1
        elif obj["body"] not in _GONE:
            score = _int(where, obj.get("score", 0), "score")
            if link not in best or score > best[link][0]:
                best[link] = (score, str(obj["id"]))
    submissions: dict[str, tuple[str, dict[str, Any]]] = {}
    comments: dict[str, tuple[str, dict[str, Any]]] = {}
    for where, kind, obj in _reddit_rows(paths):
        if kind == "submission":
            link = str(obj["id"])
            if link not in best or (wanted and str(obj.get("subreddit", "")).lower() not in wanted):
                continue
            stats["submissions joined to a comment"] += 1
            if link in comments:
                yield _reddit_candidate(where, obj, *comments.pop(link))
            else:
                submissions[link] = (where, obj)
        else:
            link = _top_level_link(obj) or ""
            if best.get(link, (0, ""))[1] == str(obj["id"]):
                if link in submissions:
                    yield _reddit_candidate(*submissions.pop(link), where, obj)
                else:
                    comments[link] = (where, obj)


def _reddit_candidate(sub_where: str, submission: dict, where: str, comment: dict) -> Candidate:
    subreddit = str(submission.get("subreddit", "reddit"))
    return Candidate(
        source=f"reddit_{subreddit.lower()}",
        group=subreddit,
        external_id=f"reddit/{submission['id']}",
        where=where,
        title=str(submission["title"]),
        body=str(submission.get("selftext", "")),
        answer=str(comment["body"]),
        score=int(comment.get("score", 0)),
        meta={"submission": submission["id"], "comment": comment["id"], "submission_at": sub_where},
    )


# LIMA's own `source` values (GAIR/lima train.jsonl) onto the rows of the paper's Table 1, so the
# dataset page compares like with like. LIMA does not say which Stack Exchange rows are STEM and
# which Other: they share one row, set beside the sum of the paper's two. The 30 multi-turn
# dialogues came after Table 1 (the paper's dialogue experiment) and keep a row of their own.
LIMA_SOURCES = {
    "stackexchange": "stackexchange",
    "stack_exchange": "stackexchange",
    "wikihow": "wikihow",
    "reddit": "reddit_writingprompts",
    "writingprompts": "reddit_writingprompts",
    "nlp": "natural_instructions",
    "natural_instructions": "natural_instructions",
    "super_natural_instructions": "natural_instructions",
    "supernatural_instructions": "natural_instructions",
    "authors": "authors",
    "manual": "authors",
    "multi_turn": "authors_dialogue",
    "dialogue": "authors_dialogue",
}


def lima_source(value: object) -> str:
    """The Table 1 row of a LIMA row's `source` (unknown values keep their name, prefixed lima_)."""
    name = str(value or "").strip().lower().replace("-", "_").replace(" ", "_")
    return LIMA_SOURCES.get(name, f"lima_{name or 'unknown'}")


def read_lima(path: Path) -> Iterator[Candidate]:
    """GAIR/lima rows: ``conversations`` alternate user/assistant, starting with the user. A row
    that cannot become an example is rejected with its reason (counted in the manifest), never
    fatal; a chain that ends on a user turn is trimmed to its longest prefix ending on an answer
    (and says so in its meta)."""
    for where, lineno, obj in _json_rows(path):
        source = lima_source(obj.get("source"))
        turns = obj.get("conversations")
        candidate = Candidate(source=source, group=source, external_id=f"lima/{lineno}", where=where)
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            candidate.problem = "conversations is not a non-empty list of non-empty texts"
            yield candidate
            continue
        if len(turns) % 2:
            if len(turns) == 1:
                candidate.title = turns[0]
                candidate.problem = "no answer (a single utterance: a test prompt?)"
                yield candidate
                continue
            candidate.meta["trimmed"] = f"{len(turns)} utterances end on a user turn; the last one was dropped"
            turns = turns[:-1]
        candidate.messages = alternating(turns)
        candidate.title, candidate.answer = turns[0], turns[-1]
        yield candidate


def read_ours(path: Path) -> Iterator[Candidate]:
    """Our JSONL: ``messages`` ending with the assistant's answer, or the prompt's messages and a
    ``reference_answer`` (the shipped data/train.jsonl)."""
    for where, lineno, obj in _json_rows(path):
        messages = obj.get("messages")
        if not isinstance(messages, list) or not messages:
            raise CurationError(f"{where}: messages must be a non-empty list")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
                raise CurationError(f"{where}: every message needs a role of system, user or assistant")
            if not isinstance(message.get("content"), str) or not message["content"].strip():
                raise CurationError(f"{where}: every message needs non-empty content")
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        answer = obj.get("reference_answer")
        if answer is not None:
            if not isinstance(answer, str) or not answer.strip():
                raise CurationError(f"{where}: reference_answer must be non-empty text")
            messages.append({"role": "assistant", "content": answer})
        if messages[-1]["role"] != "assistant":
            raise CurationError(f"{where}: the last message must be the assistant's (or give reference_answer)")
        source = str(obj.get("source") or "ours")
        yield Candidate(
            source=source,
            group=source,
            external_id=str(obj.get("id") or f"{path.stem}/{lineno}"),
            where=where,
            title=messages[0]["content"],
            answer=messages[-1]["content"],
            messages=messages,
            meta={"tags": obj.get("tags", [])},
        )
