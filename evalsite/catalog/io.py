"""Import and export of prompts and responses as JSON lines.

Imports read and check the whole file first, then write it in one transaction: a malformed
line stops everything with ``FILE:LINE: reason`` and nothing of the file is kept. Re-importing
the same file changes nothing (prompts are keyed by set + id, responses by system + prompt +
sample index)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from evalsite.catalog.models import Prompt, PromptSet, Response, System, messages_key, validate_messages
from evalsite.core.lookup import by_name
from generation.chat import alternating
from generation.records import RecordError, json_records


class ImportFailed(Exception):
    """A user's file is wrong. The message starts with FILE:LINE when a line is to blame."""


def read_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each record of a file of JSON lines or of one JSON array of
    objects (generation.records: UTF-8, objects, storable texts), refused above
    IMPORT_MAX_FILE_BYTES. Errors raise ImportFailed with FILE:LINE."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImportFailed(f"{path}: cannot read: {exc.strerror}") from exc
    if size > settings.IMPORT_MAX_FILE_BYTES:
        limit = settings.IMPORT_MAX_FILE_BYTES / 2**20
        raise ImportFailed(f"{path}: {size / 2**20:,.1f} MB is more than IMPORT_MAX_FILE_BYTES ({limit:,.1f} MB)")
    try:
        yield from json_records(path)
    except RecordError as exc:
        raise ImportFailed(str(exc)) from None


# --- prompts -----------------------------------------------------------------------------------
#
# Formats read (each row on its own: a file may mix them):
#   ours         {"id", "messages", "source", "tags", "reference_answer"}
#   LIMA         {"conversations", "source"}: GAIR/lima's train.jsonl and test.jsonl
#   AlpacaEval   {"instruction", "input"?, "dataset", ...}: AlpacaEval's eval set, its model outputs
#                and reference outputs, and just-eval's copy of the LIMA test prompts (JSON arrays)
#   MT-bench     {"question_id", "category", "turns", "reference"?}: FastChat's question.jsonl

PROMPT_FORMATS = {
    "ours": {"id", "messages", "source", "tags", "reference_answer"},
    "lima": {"conversations", "source"},
    "alpacaeval": {"instruction", "input", "dataset", "id"},
    "mtbench": {"question_id", "category", "turns", "reference"},
}


@dataclass
class PromptRecord:
    line: int
    external_id: str
    messages: list[dict]
    source: str = ""
    tags: list[str] = field(default_factory=list)
    reference_answer: str = ""
    follow_ups: list[str] = field(default_factory=list)
    unused: frozenset[str] = frozenset()


def prompt_format(obj: dict) -> str | None:
    if "messages" in obj:
        return "ours"
    if "conversations" in obj:
        return "lima"
    if "turns" in obj and "question_id" in obj:
        return "mtbench"
    if "instruction" in obj:
        return "alpacaeval"
    return None


MAX_ID_LENGTH = 100  # Prompt.external_id
MAX_SOURCE_LENGTH = 100  # Prompt.source
MAX_TAG_LENGTH = 50
MAX_COUNT = 2**31 - 1  # token counts: PositiveIntegerField


def parse_prompt_line(path: Path, lineno: int, obj: dict) -> PromptRecord:
    where = f"{path}:{lineno}"
    kind = prompt_format(obj)
    if kind is None:
        raise ImportFailed(
            f"{where}: expected 'messages' (our format), 'conversations' (LIMA), 'instruction' (AlpacaEval) "
            "or 'question_id' and 'turns' (MT-bench)"
        )
    record = {"ours": _parse_ours, "lima": _parse_lima, "alpacaeval": _parse_instruction, "mtbench": _parse_mtbench}[
        kind
    ](where, lineno, obj)
    record.unused = frozenset(set(obj) - PROMPT_FORMATS[kind])
    length = sum(len(m["content"]) for m in record.messages) + sum(len(t) for t in record.follow_ups)
    if length > settings.IMPORT_MAX_PROMPT_CHARS:
        limit = settings.IMPORT_MAX_PROMPT_CHARS
        raise ImportFailed(f"{where}: the prompt is {length:,} characters long (IMPORT_MAX_PROMPT_CHARS: {limit:,})")
    if len(record.external_id) > MAX_ID_LENGTH:
        raise ImportFailed(f"{where}: the id is {len(record.external_id)} characters long (at most {MAX_ID_LENGTH})")
    if len(record.source) > MAX_SOURCE_LENGTH:
        raise ImportFailed(f"{where}: the source is {len(record.source)} characters long (at most {MAX_SOURCE_LENGTH})")
    long_tags = [t for t in record.tags if len(t) > MAX_TAG_LENGTH]
    if long_tags:
        raise ImportFailed(f"{where}: a tag is {len(long_tags[0])} characters long (at most {MAX_TAG_LENGTH})")
    return record


def _text(where: str, obj: dict, key: str, *, required: bool = True) -> str:
    value = obj.get(key, "")
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ImportFailed(f"{where}: '{key}' must be {'non-empty ' if required else ''}text")
    return value


def _check_source_and_tags(where: str, obj: dict) -> tuple[str, list[str]]:
    source = obj.get("source", "")
    if not isinstance(source, str):
        raise ImportFailed(f"{where}: 'source' must be a string")
    tags = obj.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise ImportFailed(f"{where}: 'tags' must be a list of non-empty strings")
    return source, sorted(set(tags))


def _external_id(where: str, value: object, messages: list[dict], key: str = "id") -> str:
    if value is None:
        return "h" + messages_key(messages)[:12]
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise ImportFailed(f"{where}: '{key}' must be a non-empty string or a number")
    return str(value).strip()


def _parse_ours(where: str, lineno: int, obj: dict) -> PromptRecord:
    messages = obj["messages"]
    try:
        validate_messages(messages)
    except ValidationError as exc:
        raise ImportFailed(f"{where}: {exc.messages[0]}") from exc
    source, tags = _check_source_and_tags(where, obj)
    ext_id = _external_id(where, obj.get("id"), messages)
    reference = _text(where, obj, "reference_answer", required=False)
    if sum(1 for m in messages if m["role"] == "user") > 1 and "multi_turn" not in tags:
        tags = sorted([*tags, "multi_turn"])
    return PromptRecord(lineno, ext_id, messages, source, tags, reference)


def _parse_lima(where: str, lineno: int, obj: dict) -> PromptRecord:
    turns = obj["conversations"]
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise ImportFailed(f"{where}: 'conversations' must be a non-empty list of non-empty strings")
    source, _ = _check_source_and_tags(where, obj)
    # LIMA alternates user, assistant, user, ... A trailing assistant turn is the reference answer.
    reference = ""
    if len(turns) % 2 == 0:
        reference = turns[-1]
        turns = turns[:-1]
    messages = alternating(turns)
    tags = ["multi_turn"] if len(turns) > 1 else []
    return PromptRecord(lineno, "h" + messages_key(messages)[:12], messages, source, tags, reference)


def instruction_text(instruction: str, input_: str = "") -> str:
    """The user turn of an Alpaca-style row: the instruction, then its input (if any) after a blank
    line, as the Alpaca and AlpacaEval data join them."""
    return f"{instruction.strip()}\n\n{input_.strip()}" if input_ and input_.strip() else instruction.strip()


def _parse_instruction(where: str, lineno: int, obj: dict) -> PromptRecord:
    text = instruction_text(_text(where, obj, "instruction"), _text(where, obj, "input", required=False))
    messages = [{"role": "user", "content": text}]
    source = _text(where, obj, "dataset", required=False)
    return PromptRecord(lineno, _external_id(where, obj.get("id"), messages), messages, source)


def _parse_mtbench(where: str, lineno: int, obj: dict) -> PromptRecord:
    turns = obj["turns"]
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise ImportFailed(f"{where}: 'turns' must be a non-empty list of non-empty strings")
    reference = obj.get("reference") or []
    if not isinstance(reference, list) or not all(isinstance(r, str) for r in reference):
        raise ImportFailed(f"{where}: 'reference' must be a list of texts")
    messages = [{"role": "user", "content": turns[0]}]
    ext_id = _external_id(where, obj["question_id"], messages, "question_id")
    category = _text(where, obj, "category", required=False)
    # the later turns are asked after the system's own previous answer (generated, not given)
    return PromptRecord(lineno, ext_id, messages, category, ["mt_bench"], reference[0] if reference else "", turns[1:])


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    unmatched: list[str] = field(default_factory=list)
    formats: Counter = field(default_factory=Counter)  # rows per format read
    unused: Counter = field(default_factory=Counter)  # fields of the file we do not use: rows carrying each

    def note(self, kind: str, unused: frozenset[str]) -> None:
        self.formats[kind] += 1
        self.unused.update(unused)

    def record(self, existing, values: dict, create) -> None:
        """Create the row, update it if a value changed, or count it unchanged (re-imports)."""
        if existing is None:
            create()
            self.created += 1
        elif any(getattr(existing, k) != v for k, v in values.items()):
            for key, value in values.items():
                setattr(existing, key, value)
            existing.save(update_fields=list(values))
            self.updated += 1
        else:
            self.unchanged += 1

    def summary(self) -> str:
        text = f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"
        if self.unmatched:
            text += f", {len(self.unmatched)} unmatched"
        if self.formats:
            text += " (read as " + ", ".join(f"{kind} {n}" for kind, n in self.formats.most_common()) + ")"
        if self.unused:
            fields = ", ".join(f"{name} ({n} row{'s' if n != 1 else ''})" for name, n in sorted(self.unused.items()))
            text += f"; fields not used: {fields}"
        return text


def import_prompts(
    path: Path, set_name: str, purpose: str = PromptSet.Purpose.TEST, description: str = ""
) -> ImportReport:
    records: list[PromptRecord] = []
    seen: dict[str, int] = {}
    report = ImportReport()
    for lineno, obj in read_records(path):
        record = parse_prompt_line(path, lineno, obj)
        report.note(prompt_format(obj) or "", record.unused)
        if record.external_id in seen:
            raise ImportFailed(
                f"{path}:{lineno}: prompt id {record.external_id!r} repeats line {seen[record.external_id]}"
            )
        seen[record.external_id] = lineno
        records.append(record)
    if not records:
        raise ImportFailed(f"{path}: no prompts in the file")
    if purpose not in PromptSet.Purpose.values:
        raise ImportFailed(f"purpose must be one of {', '.join(PromptSet.Purpose.values)}")
    with transaction.atomic():
        prompt_set, created = PromptSet.objects.get_or_create(
            name=set_name, defaults={"purpose": purpose, "description": description}
        )
        existing = {p.external_id: p for p in prompt_set.prompts.all()}
        for record in records:
            values = {
                "messages": record.messages,
                "source": record.source,
                "tags": record.tags,
                "reference_answer": record.reference_answer,
                "follow_ups": record.follow_ups,
            }
            report.record(
                existing.get(record.external_id),
                values,
                lambda values=values, record=record: Prompt.objects.create(
                    prompt_set=prompt_set, external_id=record.external_id, **values
                ),
            )
    return report


# --- responses ---------------------------------------------------------------------------------

RESPONSE_TEXT_KEYS = ("response", "output", "text")
RESPONSE_PROMPT_KEYS = ("prompt", "instruction")
# AlpacaEval's outputs carry more (generator, dataset, datasplit, price_per_example, raw_completion,
# ...): fields not read here are listed once in the summary, never fatal.
RESPONSE_KEYS = {
    "id",
    "prompt_id",
    "sample_index",
    "prompt_tokens",
    "completion_tokens",
    "generator",
    "finish_reason",
    *RESPONSE_TEXT_KEYS,
    *RESPONSE_PROMPT_KEYS,
    "input",
}


@dataclass
class ResponseRecord:
    line: int
    prompt_id: str | None
    prompt_text: str | None
    text: str
    sample_index: int
    prompt_tokens: int | None
    completion_tokens: int | None
    unused: frozenset[str] = frozenset()


def _one_of(where: str, obj: dict, keys: tuple[str, ...]) -> str | None:
    present = [k for k in keys if k in obj]
    if len(present) > 1:
        raise ImportFailed(f"{where}: give only one of {', '.join(present)}")
    if not present:
        return None
    value = obj[present[0]]
    if not isinstance(value, str):
        raise ImportFailed(f"{where}: '{present[0]}' must be a string")
    return value


def _optional_count(where: str, obj: dict, key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ImportFailed(f"{where}: '{key}' must be a whole number from 0 to {MAX_COUNT:,}")
    return value


def parse_response_line(path: Path, lineno: int, obj: dict) -> ResponseRecord:
    where = f"{path}:{lineno}"
    text = _one_of(where, obj, RESPONSE_TEXT_KEYS)
    if text is None:
        raise ImportFailed(f"{where}: missing the response text ('response', 'output' or 'text')")
    if len(text) > settings.IMPORT_MAX_RESPONSE_CHARS:
        raise ImportFailed(
            f"{where}: the response is {len(text):,} characters long "
            f"(IMPORT_MAX_RESPONSE_CHARS: {settings.IMPORT_MAX_RESPONSE_CHARS:,})"
        )
    prompt_id = obj.get("prompt_id", obj.get("id"))
    if prompt_id is not None and (isinstance(prompt_id, bool) or not isinstance(prompt_id, str | int)):
        raise ImportFailed(f"{where}: 'id' must be a string or a number")
    prompt_text = _one_of(where, obj, RESPONSE_PROMPT_KEYS)
    if prompt_text is not None and "instruction" in obj:
        prompt_text = instruction_text(prompt_text, _text(where, obj, "input", required=False))
    if prompt_id is None and prompt_text is None:
        raise ImportFailed(f"{where}: give the prompt's 'id' or its exact text ('prompt' or 'instruction')")
    sample_index = obj.get("sample_index", 0)
    if isinstance(sample_index, bool) or not isinstance(sample_index, int) or not 0 <= sample_index < 1000:
        raise ImportFailed(f"{where}: 'sample_index' must be a whole number from 0 to 999")
    return ResponseRecord(
        lineno,
        None if prompt_id is None else str(prompt_id),
        prompt_text,
        text,
        sample_index,
        _optional_count(where, obj, "prompt_tokens"),
        _optional_count(where, obj, "completion_tokens"),
        frozenset(set(obj) - RESPONSE_KEYS),
    )


def _normalise(text: str) -> str:
    return " ".join(text.split())


# Apps above the catalog append a function here (in their AppConfig.ready) that, given response
# ids, says which of them are held by something that must not see them change, and by what:
# {response id: ["study S (open)", ...]}. The annotation app holds a study's responses.
RESPONSE_HOLDERS: list = []


def holders_of(response_ids: list[int]) -> dict[int, list[str]]:
    held: dict[int, list[str]] = defaultdict(list)
    for holders in RESPONSE_HOLDERS:
        for pk, names in holders(response_ids).items():
            held[pk].extend(names)
    return held


def import_responses(path: Path, system_name: str, set_name: str | None = None, strict: bool = False) -> ImportReport:
    """Load a baseline's precomputed outputs. Each line is matched to a prompt by id, or else by
    the exact text of the prompt (whitespace-insensitive). Lines that match nothing are listed
    in the report; with ``strict`` they abort the import."""
    system = by_name(System, system_name, ImportFailed, "add it with manage.py systems add")
    prompts = Prompt.objects.select_related("prompt_set")
    if set_name:
        if not PromptSet.objects.filter(name=set_name).exists():
            raise ImportFailed(f"no prompt set named {set_name!r}")
        prompts = prompts.filter(prompt_set__name=set_name)
    by_id: dict[str, list[Prompt]] = defaultdict(list)
    by_text: dict[str, list[Prompt]] = defaultdict(list)
    for prompt in prompts:
        by_id[prompt.external_id].append(prompt)
        by_text[_normalise(prompt.text)].append(prompt)

    report = ImportReport()
    matched: list[tuple[ResponseRecord, Prompt]] = []
    keys: dict[tuple[int, int], int] = {}
    for lineno, obj in read_records(path):
        record = parse_response_line(path, lineno, obj)
        report.note("alpacaeval" if "instruction" in obj else "ours", record.unused)
        candidates = by_id.get(record.prompt_id, []) if record.prompt_id is not None else []
        if not candidates and record.prompt_text is not None:
            candidates = by_text.get(_normalise(record.prompt_text), [])
        label = record.prompt_id or (record.prompt_text or "")[:60]
        if len(candidates) > 1:
            sets = ", ".join(sorted({p.prompt_set.name for p in candidates}))
            raise ImportFailed(f"{path}:{lineno}: prompt {label!r} matches prompts in several sets ({sets}); use --set")
        if not candidates:
            report.unmatched.append(f"{path}:{lineno}: {label!r}")
            continue
        key = (candidates[0].pk, record.sample_index)
        if key in keys:
            raise ImportFailed(f"{path}:{lineno}: a second response to the same prompt and sample (line {keys[key]})")
        keys[key] = lineno
        matched.append((record, candidates[0]))
    if report.unmatched and strict:
        raise ImportFailed(f"{len(report.unmatched)} response(s) match no prompt:\n  " + "\n  ".join(report.unmatched))
    if not matched and not report.unmatched:
        raise ImportFailed(f"{path}: no responses in the file")

    with transaction.atomic():
        existing = {
            (r.prompt_id, r.sample_index): r
            for r in Response.objects.filter(system=system, prompt__in=[p for _, p in matched])
        }
        # A response inside a study does not change: annotators saw its text (rendered when the
        # study opened) and the judge judged it; a new text would make people and judge see
        # different answers for one comparison. Import a new text under a new system instead.
        changing = {
            existing[(prompt.pk, record.sample_index)].pk: (record, prompt)
            for record, prompt in matched
            if (prompt.pk, record.sample_index) in existing
            and existing[(prompt.pk, record.sample_index)].text != record.text
        }
        held = holders_of(list(changing))
        if held:
            lines = [
                f"{path}:{changing[pk][0].line}: prompt {changing[pk][1].external_id!r}: held by {', '.join(names)}"
                for pk, names in sorted(held.items(), key=lambda item: changing[item[0]][0].line)
            ]
            raise ImportFailed(
                f"{len(lines)} response(s) would change inside a study (its annotators and judge saw the old text); "
                f"nothing was imported. Import the new texts as another system (systems add NAME --backend "
                f"imported):\n  " + "\n  ".join(lines)
            )
        for record, prompt in matched:
            values = {
                "text": record.text,
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
                "finish_reason": "imported",
                "error": "",
            }
            old = existing.get((prompt.pk, record.sample_index))
            if old is not None and old.text != record.text:
                values["html"] = None  # rendered again from the new text when first shown
            report.record(
                existing.get((prompt.pk, record.sample_index)),
                values,
                lambda values=values, record=record, prompt=prompt: Response.objects.create(
                    system=system,
                    prompt=prompt,
                    sample_index=record.sample_index,
                    metadata={"imported_from": path.name},
                    **values,
                ),
            )
    return report


# --- export ------------------------------------------------------------------------------------


def export_prompts() -> Iterator[dict]:
    for p in Prompt.objects.select_related("prompt_set").order_by("prompt_set__name", "id").iterator():
        row = {
            "set": p.prompt_set.name,
            "id": p.external_id,
            "messages": p.messages,
            "source": p.source,
            "tags": p.tags,
        }
        if p.reference_answer:
            row["reference_answer"] = p.reference_answer
        yield row


def export_systems() -> Iterator[dict]:
    for s in System.objects.order_by("name").iterator():
        yield {
            "name": s.name,
            "kind": s.kind,
            "backend": s.backend,
            "backend_config": s.backend_config,
            "sampling": s.sampling_config.to_dict(),
            "description": s.description,
        }


def export_responses() -> Iterator[dict]:
    rows = Response.objects.select_related("system", "prompt", "prompt__prompt_set").order_by(
        "system__name", "prompt_id", "sample_index"
    )
    for r in rows.iterator(chunk_size=2000):
        yield {
            "system": r.system.name,
            "set": r.prompt.prompt_set.name,
            "id": r.prompt.external_id,
            "sample_index": r.sample_index,
            "response": r.text,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "latency_seconds": r.latency_seconds,
            "finish_reason": r.finish_reason,
            "error": r.error,
            "notes": r.notes,
        }


# Later apps append (file name, row generator) pairs here in their AppConfig.ready().
EXPORTS: list[tuple[str, object]] = [
    ("prompts.jsonl", export_prompts),
    ("systems.jsonl", export_systems),
    ("responses.jsonl", export_responses),
]


def export_all(out_dir: Path) -> dict[str, int]:
    """Write every table as JSON lines into out_dir (written to a temporary name, then renamed,
    so a failed export never leaves half a file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, rows in EXPORTS:
        target = out_dir / name
        partial = target.with_suffix(target.suffix + ".partial")
        n = 0
        with partial.open("w", encoding="utf-8") as handle:
            for row in rows():  # type: ignore[operator]
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        partial.replace(target)
        counts[name] = n
    return counts
