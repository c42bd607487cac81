"""Importers for the paper's sources, streaming: a file is read line by line (never whole), and
only what the next step needs is kept (for Stack Exchange and Reddit, the id and score of each
question's best answer). A malformed line raises CurationError("FILE:LINE: reason").

Every importer yields Candidates: a prompt/answer pair still to be filtered (filters.py)."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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

    @property
    def prompt(self) -> str:
        return self.messages[0]["content"] if self.messages else self.title


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as handle:
            yield from enumerate(handle, start=1)
    except UnicodeDecodeError as exc:
        raise CurationError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise CurationError(f"{path}: {exc.strerror}") from None


def _int(where: str, value: str | None, name: str) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CurationError(f"{where}: {name} must be a whole number, not {value!r}") from None


# -- Stack Exchange data dump: Posts.xml, one <row .../> per line ---------------------------------


def _stack_rows(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    for lineno, line in _lines(path):
        text = line.strip()
        if not text or text.startswith("<?xml") or text in ("<posts>", "</posts>"):
            continue
        where = f"{path}:{lineno}"
        if not text.startswith("<row"):
            raise CurationError(f"{where}: expected a <row .../> element, got {text[:40]!r}")
        try:
            row = ET.fromstring(text).attrib
        except ET.ParseError as exc:
            raise CurationError(f"{where}: malformed XML ({exc})") from None
        for needed in ("Id", "PostTypeId"):
            if needed not in row:
                raise CurationError(f"{where}: row without {needed}")
        yield where, row


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
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise CurationError(f"{path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in ("title", "text") if c not in columns]
        if missing:
            raise CurationError(f"{path}:1: missing column(s) {', '.join(missing)} (have: {', '.join(columns)})")
        try:
            for n, row in enumerate(reader, start=1):
                where = f"{path}:{reader.line_num}"
                if None in row or any(row[c] is None for c in columns):
                    raise CurationError(f"{where}: expected {len(columns)} fields")
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
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CurationError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise CurationError(f"{where}: expected a JSON object")
        yield where, lineno, obj


# -- Pushshift Reddit JSONL: submissions (title) and comments (body, parent_id) --------------------

_GONE = ("[deleted]", "[removed]", "")


def _reddit_rows(paths: Iterable[Path]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in paths:
        for where, _, obj in _json_rows(path):
            if "id" not in obj:
                raise CurationError(f"{where}: expected an object with an id")
            if "title" in obj:
                yield where, "submission", obj
            elif "body" in obj and "parent_id" in obj:
                yield where, "comment", obj
            else:
                raise CurationError(f"{where}: neither a submission (title) nor a comment (body, parent_id)")


def read_reddit(paths: Iterable[Path]) -> Iterator[Candidate]:
    """Each submission with its top-scoring top-level comment (submissions and comments may be in
    the same file or in several)."""
    paths = list(paths)
    best: dict[str, tuple[int, str]] = {}
    for where, kind, obj in _reddit_rows(paths):
        if kind == "comment" and str(obj["parent_id"]).startswith("t3_") and obj["body"] not in _GONE:
            score = _int(where, obj.get("score", 0), "score")
            link = obj["parent_id"][3:]
            if link not in best or score > best[link][0]:
                best[link] = (score, str(obj["id"]))
    submissions: dict[str, tuple[str, dict[str, Any]]] = {}
    comments: dict[str, tuple[str, dict[str, Any]]] = {}
    for where, kind, obj in _reddit_rows(paths):
        if kind == "submission" and str(obj["id"]) in best:
            link = str(obj["id"])
            if link in comments:
                yield _reddit_candidate(where, obj, *comments.pop(link))
            else:
                submissions[link] = (where, obj)
        elif kind == "comment" and str(obj["parent_id"]).startswith("t3_"):
            link = obj["parent_id"][3:]
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


# -- conversations: the published LIMA JSONL and our own JSONL ------------------------------------


def read_lima(path: Path) -> Iterator[Candidate]:
    """GAIR/lima rows: ``conversations`` alternate user/assistant, starting with the user."""
    for where, lineno, obj in _json_rows(path):
        turns = obj.get("conversations")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise CurationError(f"{where}: conversations must be a non-empty list of texts")
        if len(turns) % 2:
            raise CurationError(f"{where}: {len(turns)} utterances; a training row ends with an answer (a test row?)")
        messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
        source = str(obj.get("source") or "lima")
        yield Candidate(
            source=f"lima_{source}",
            group=source,
            external_id=f"lima/{lineno}",
            where=where,
            title=turns[0],
            answer=turns[-1],
            messages=messages,
        )


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
