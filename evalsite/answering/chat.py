"""Live conversations with a system (the paper's Figure 7: the authors held ten conversations
with LIMA and graded every assistant turn). The staff page sends a message, the system answers
in the same request (its backend kept loaded in this process between messages), the person grades
the answer before sending the next one; Figure 7 counts every graded turn per system."""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from evalsite.answering.models import ChatTurn, Conversation
from evalsite.catalog.models import System
from evalsite.core.figures import Chart, Figure, graded_chart, graded_row, register
from evalsite.core.jobs import CannotStart
from evalsite.core.paper import Grade
from generation.backends import make_backend
from generation.config import ConfigError
from generation.types import GenerationRequest
from stats.outcomes import label_shares

# the paper's Figure 7, per assistant turn: (Excellent, Pass, Fail) in percent
PAPER_FIGURE_7 = {
    "LIMA, zero-shot (no dialogue in training)": (45.2, 19.1, 35.7),
    "LIMA + 30 dialogue chains": (76.1, 21.7, 2.2),
}
MAX_MESSAGE = 20_000
ANSWER_MINUTES = 10  # the longest an answer may take before its conversation's mark counts as a crash


class ChatError(CannotStart):
    """A message that cannot be sent or graded; the text says why."""


_backends: dict[tuple[int, str], tuple[object, threading.Lock]] = {}
_backends_lock = threading.Lock()


def _backend(system: System):
    """The system's backend, made once per process and configuration (a local model stays loaded
    between messages), with a lock: one generation at a time per backend."""
    key = (system.pk, json.dumps([system.backend, system.backend_config], sort_keys=True))
    with _backends_lock:
        if key not in _backends:
            try:
                _backends[key] = (make_backend(system.backend, system.backend_config), threading.Lock())
            except ConfigError as exc:
                raise ChatError(f"system {system.name}: {exc}") from exc
        return _backends[key]


def start(system: System, staff) -> Conversation:
    if system.backend == "imported":
        raise ChatError(f"system {system.name} only has imported responses: it cannot answer a new message")
    return Conversation.objects.create(system=system, staff=staff)


def say(conversation: Conversation, text: str) -> ChatTurn:
    """Send the person's message and store the system's answer as the next turn."""
    text = text.strip()
    if not text:
        raise ChatError("the message is empty")
    if len(text) > MAX_MESSAGE:
        raise ChatError(f"the message is longer than {MAX_MESSAGE:,} characters")
    last = conversation.turns.order_by("-index").first()
    if last is not None and not last.grade:
        raise ChatError(f"grade answer {last.index} first (Fail, Pass or Excellent): each turn is judged")
    index = (last.index if last else 0) + 1
    messages = [*conversation.messages(), {"role": "user", "content": text}]
    backend, lock = _backend(conversation.system)
    # one answer at a time per conversation, across processes: the send that takes the mark
    # generates; a send while it is held is refused (a mark older than ANSWER_MINUTES is a crash's)
    now = timezone.now()
    free = Q(answering_since__isnull=True) | Q(answering_since__lt=now - timedelta(minutes=ANSWER_MINUTES))
    if not Conversation.objects.filter(free, pk=conversation.pk).update(answering_since=now):
        raise ChatError("an answer is being written for this conversation: wait for it, then send the next message")
    try:
        with lock:
            [result] = list(
                backend.generate([GenerationRequest(key=index, messages=messages)], conversation.system.sampling_config)
            )
    finally:
        Conversation.objects.filter(pk=conversation.pk, answering_since=now).update(answering_since=None)
    if not result.ok:
        raise ChatError(f"{conversation.system.name} did not answer: {result.error}")
    try:
        with transaction.atomic():
            return ChatTurn.objects.create(
                conversation=conversation,
                index=index,
                user_text=text,
                assistant_text=result.text,
                finish_reason=result.finish_reason,
                latency_seconds=result.latency_seconds,
            )
    except IntegrityError:
        raise ChatError("this message was already sent (the page was submitted twice)") from None


def grade(conversation: Conversation, index: int, value: str) -> ChatTurn:
    if value not in Grade.values:
        raise ChatError(f"grade must be one of {', '.join(Grade.values)}, not {value!r}")
    turn = conversation.turns.filter(index=index).first()
    if turn is None:
        raise ChatError(f"conversation {conversation.pk} has no turn {index}")
    ChatTurn.objects.filter(pk=turn.pk).update(grade=value)
    turn.grade = value
    return turn


def figure_7() -> dict:
    """Per system: the Excellent / Pass / Fail shares of its graded assistant turns, with 95%
    intervals resampling conversations (turns of one conversation are not independent), and per
    turn number the same counts."""
    rows = ChatTurn.objects.exclude(grade="").values_list(
        "conversation__system__name", "conversation_id", "index", "grade"
    )
    per_conversation: dict[str, dict[int, Counter]] = defaultdict(lambda: defaultdict(Counter))
    per_turn: dict[str, dict[int, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for system, conversation, index, value in rows:
        per_conversation[system][conversation][value] += 1
        per_turn[system][index][value] += 1
    bars, turns = [], []
    for system in sorted(per_conversation):
        shares = label_shares(per_conversation[system].values(), win="excellent", loss="fail", tie="pass")
        # a bar's n is its graded turns; the intervals resample its conversations
        bars.append({**graded_row(system, {**shares.as_dict(), "n": shares.votes}), "conversations": shares.n})
        for index, counts in sorted(per_turn[system].items()):
            total = sum(counts.values())
            turns.append(
                {"system": system, "turn": index, "graded": total, **{g: counts[g] / total for g in Grade.values}}
            )
    return {"bars": bars, "turns": turns}


def figure_7_chart(figure: dict | None = None) -> Chart | None:
    """Figure 7 from figure_7's result: each system's graded turns, beside the paper's."""
    figure = figure_7() if figure is None else figure
    if not figure["bars"]:
        return None
    chart = graded_chart(
        "figure7",
        "Figure 7: assistant turns graded in live conversations",
        figure["bars"],
        paper=PAPER_FIGURE_7,
        paper_title="The paper (10 conversations with LIMA 65B)",
    )
    return chart


register(
    Figure(
        "figure7",
        "Figure 7",
        "assistant turns of live conversations graded Excellent / Pass / Fail, per system",
        "site",
        "generations:chat_index",
        lambda _subject=None, paper=True: figure_7_chart(),
    )
)
