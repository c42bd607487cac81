"""Live conversations with a system (the paper's Figure 7: the authors held ten conversations
with LIMA and graded every assistant turn). The staff page sends a message; its answer is written
by a worker of the ``live`` queue, never by the web process: that worker keeps each system's
backend loaded between messages (and may load some when it starts: CHAT_PRELOAD_SYSTEMS), and
stores the answer as it grows, so the page shows it streaming, says "waiting for a worker" and
then "loading the model" while either is so, and keeps Send disabled until it is done; the person
grades each answer before sending the next one; Figure 7 counts every graded turn per system."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import Q
from django.utils import timezone

from evalsite.answering.models import ChatTurn, Conversation
from evalsite.catalog.models import System
from evalsite.core.figures import Chart, Figure, graded_chart, graded_row, register
from evalsite.core.jobs import BROKER_RETRY, CannotStart
from evalsite.core.paper import Grade
from generation.backends import make_backend, stream_one
from generation.config import ConfigError
from generation.model_thread import ModelThread
from generation.types import GenerationRequest
from stats.outcomes import label_shares

# the paper's Figure 7, per assistant turn: (Excellent, Pass, Fail) in percent
PAPER_FIGURE_7 = {
    "LIMA, zero-shot (no dialogue in training)": (45.2, 19.1, 35.7),
    "LIMA + 30 dialogue chains": (76.1, 21.7, 2.2),
}
MAX_MESSAGE = 20_000
SAVE_SECONDS = 0.2  # how often an answer being written is stored for the page to show
ANSWER_MINUTES = 10  # the longest an answer may take before its conversation's mark counts as a crash
LIVE_QUEUE = "live"  # the Celery queue whose workers write chat answers (evalsite/celery.py routes live.*)
ANSWER_TASK = "live.chat_answer"

log = logging.getLogger(__name__)


class ChatError(CannotStart):
    """A message that cannot be sent or graded; the text says why."""


# per system and configuration: its backend, the lock one generation at a time takes, and for a
# local model the thread that loads and runs it (generation.model_thread.ModelThread)
_backends: dict[tuple[int, str], tuple[object, threading.Lock, ModelThread | None]] = {}
_loading: dict[tuple[int, str], threading.Lock] = {}
_backends_lock = threading.Lock()  # guards the two dicts, never held while a model loads


def _key(system: System) -> tuple[int, str]:
    return (system.pk, json.dumps([system.backend, system.backend_config], sort_keys=True))


def _loaded(system: System) -> bool:
    """Whether this process holds the system's backend already (no model to load first)."""
    with _backends_lock:
        return _key(system) in _backends


def _backend(system: System):
    """The system's backend, made once per process and configuration (a local model stays loaded
    between messages in the worker that wrote its last answer), with a lock: one generation at a
    time per backend; and for a local model the one thread that loads and runs it, whichever of the
    worker's pool threads takes the message (so its OpenMP team is one; two local systems keep a
    thread each and answer side by side, as an arena's battle asks). Two answers for a system being
    loaded wait for the one load; an answer for another system does not."""
    key = _key(system)
    with _backends_lock:
        if key in _backends:
            return _backends[key]
        loading = _loading.setdefault(key, threading.Lock())
    with loading:
        with _backends_lock:
            if key in _backends:
                return _backends[key]
        runner = ModelThread(f"model-{system.pk}") if system.backend == "hf_local" else None
        try:
            if runner is not None:
                made = runner.run(lambda: _made_for_one_answer(system))
            else:
                made = make_backend(system.backend, system.backend_config)
        except ConfigError as exc:
            raise ChatError(f"system {system.name}: {exc}") from exc
        with _backends_lock:
            _backends[key] = (made, threading.Lock(), runner)
            return _backends[key]


def _made_for_one_answer(system: System):
    """A local system's backend with its one-answer decoder made too: the chat and the arena write
    one answer at a time, and where that runs on the model's int4 form (hf_local's
    one_row_weights) the form is loaded with the model, not in the first answer."""
    made = make_backend(system.backend, system.backend_config)
    loaded = getattr(made, "loaded", None)
    if loaded is not None:
        loaded.one_row_decoder()
    return made


def start(system: System, staff) -> Conversation:
    if system.backend == "imported":
        raise ChatError(f"system {system.name} only has imported responses: it cannot answer a new message")
    return Conversation.objects.create(system=system, staff=staff)


def send(conversation: Conversation, text: str, graded: bool = True) -> ChatTurn:
    """The person's message as the conversation's next turn, its answer not yet written (``write``
    writes it; the page shows it as it grows). Refused while an answer is being written for this
    conversation, and (``graded``: the staff's chat, Figure 7) until the last answer is graded."""
    text = text.strip()
    if not text:
        raise ChatError("the message is empty")
    if len(text) > MAX_MESSAGE:
        raise ChatError(f"the message is longer than {MAX_MESSAGE:,} characters")
    # one answer at a time per conversation, across processes: the send that takes the mark gets
    # its answer written; a send while it is held is refused (a mark older than ANSWER_MINUTES is a
    # crash's: its turn is marked failed)
    now = timezone.now()
    stale = now - timedelta(minutes=ANSWER_MINUTES)
    free = Q(answering_since__isnull=True) | Q(answering_since__lt=stale)
    if not Conversation.objects.filter(free, pk=conversation.pk).update(answering_since=now):
        raise ChatError("an answer is being written for this conversation: wait for it, then send the next message")
    try:
        conversation.turns.filter(state__in=ChatTurn.UNFINISHED).update(
            state=ChatTurn.State.FAILED, error=f"the answer stopped: nothing was written for {ANSWER_MINUTES} minutes"
        )
        last = conversation.turns.order_by("-index").first()
        answered = conversation.turns.filter(state=ChatTurn.State.DONE).order_by("-index").first()
        if graded and answered is not None and not answered.grade:
            raise ChatError(f"grade answer {answered.index} first (Fail, Pass or Excellent): each turn is judged")
        with transaction.atomic():
            return ChatTurn.objects.create(
                conversation=conversation,
                index=(last.index if last else 0) + 1,
                user_text=text,
                state=ChatTurn.State.QUEUED,
            )
    except IntegrityError:
        _release(conversation, now)
        raise ChatError("this message was already sent (the page was submitted twice)") from None
    except ChatError:
        _release(conversation, now)
        raise


def _release(conversation: Conversation, mark) -> None:
    Conversation.objects.filter(pk=conversation.pk, answering_since=mark).update(answering_since=None)


class _Progress:
    """Stores the answer's text as it grows, at most every SAVE_SECONDS (the page reads it)."""

    def __init__(self, turn_pk: int):
        self.turn_pk, self.saved_at = turn_pk, 0.0

    def __call__(self, text: str) -> None:
        if time.monotonic() - self.saved_at >= SAVE_SECONDS:
            self.saved_at = time.monotonic()
            ChatTurn.objects.filter(pk=self.turn_pk, state=ChatTurn.State.WRITING).update(assistant_text=text)


def write(turn_pk: int) -> ChatTurn:
    """Write a sent turn's answer: the system's backend loaded (once per process: the turn says
    "loading the model" meanwhile), then the answer streamed into the turn as it is generated,
    and the conversation free for the next message. A failure is the turn's error, shown on the
    page; the person may send again. A turn already written (a message delivered twice) is left
    as it is."""
    turn = ChatTurn.objects.select_related("conversation__system").get(pk=turn_pk)
    if turn.state != ChatTurn.State.QUEUED:
        return turn
    conversation, system = turn.conversation, turn.conversation.system
    mark = conversation.answering_since
    try:
        if not _loaded(system):
            log.info("chat turn %s: loading %s first", turn.pk, system.name)
            ChatTurn.objects.filter(pk=turn.pk).update(state=ChatTurn.State.LOADING)
        backend, lock, runner = _backend(system)
        ChatTurn.objects.filter(pk=turn.pk).update(state=ChatTurn.State.WRITING)
        messages = [*conversation.messages(before=turn.index), {"role": "user", "content": turn.user_text}]
        request, sampling, progress = (
            GenerationRequest(key=turn.index, messages=messages),
            system.sampling_config,
            _Progress(turn.pk),
        )
        with lock:
            if runner is not None:  # on the thread that loaded it; the text saved here
                result = runner.stream(lambda emit: stream_one(backend, request, sampling, emit), progress)
            else:
                result = stream_one(backend, request, sampling, progress)
        if result.ok:
            changes = {
                "state": ChatTurn.State.DONE,
                "assistant_text": result.text,
                "finish_reason": result.finish_reason,
                "latency_seconds": result.latency_seconds,
            }
        else:
            changes = {"state": ChatTurn.State.FAILED, "error": f"{system.name} did not answer: {result.error}"}
    except Exception as exc:  # a model that cannot load, a backend that breaks: said on the turn
        changes = {"state": ChatTurn.State.FAILED, "error": f"{system.name} did not answer: {exc}"}
    try:  # the turn finished before the conversation is free: a send in between would take it for a crash's
        ChatTurn.objects.filter(pk=turn.pk).update(**changes)
    finally:
        if mark is not None:
            _release(conversation, mark)
    turn.refresh_from_db()
    return turn


def request_answer(turn: ChatTurn) -> None:
    """Ask a worker of the live queue to write the turn's answer, once the turn is committed (the
    request that sent the message returns at once; the page follows the answer as it grows). A
    broker that cannot be reached fails the turn at once, saying so, and frees the conversation:
    the person sends the message again."""
    mark = Conversation.objects.filter(pk=turn.conversation_id).values_list("answering_since", flat=True).first()

    def send_message() -> None:
        from evalsite.celery import app

        try:
            app.send_task(ANSWER_TASK, args=[turn.pk], queue=LIVE_QUEUE, retry=True, retry_policy=BROKER_RETRY)
        except Exception as exc:  # noqa: BLE001  (kombu's and the transports' connection errors)
            log.error("chat turn %s: the broker cannot be reached (%s)", turn.pk, exc.__class__.__name__)
            ChatTurn.objects.filter(pk=turn.pk, state=ChatTurn.State.QUEUED).update(
                state=ChatTurn.State.FAILED,
                error="the workers cannot be reached (the message broker is down): send the message again",
            )
            if mark is not None:
                _release(turn.conversation, mark)

    transaction.on_commit(send_message)


def preload(names: list[str]) -> list[str]:
    """Load these systems' backends in this process now (a live worker at its start), so that the
    first answer after the site starts does not wait for its model; returns what it loaded. A name
    that is not a system, or one that cannot load, is logged and skipped."""
    loaded = []
    for name in names:
        system = System.objects.filter(name=name).first()
        if system is None or system.backend == "imported":
            log.warning("chat preload: no system named %r that can answer", name)
            continue
        try:
            _backend(system)
        except Exception as exc:  # noqa: BLE001  (a model that cannot load is said when it is asked)
            log.warning("chat preload: %s did not load: %s", name, exc)
            continue
        log.info("chat preload: %s is loaded", name)
        loaded.append(name)
    return loaded


def preload_configured() -> threading.Thread | None:
    """Preload CHAT_PRELOAD_SYSTEMS in a thread of this worker (it takes messages meanwhile: an
    answer for a system being loaded waits for it, saying "loading the model")."""
    names = [n.strip() for n in settings.CHAT_PRELOAD_SYSTEMS.split(",") if n.strip()]
    if not names:
        return None

    def run() -> None:
        try:
            preload(names)
        finally:
            connections.close_all()  # this thread's own connection

    thread = threading.Thread(target=run, name="chat-preload", daemon=True)
    thread.start()
    return thread


def say(conversation: Conversation, text: str) -> ChatTurn:
    """Send the person's message and write its answer, in this thread; a failed answer is an error."""
    turn = write(send(conversation, text).pk)
    if turn.state == ChatTurn.State.FAILED:
        raise ChatError(turn.error)
    return turn


def grade(conversation: Conversation, index: int, value: str) -> ChatTurn:
    if value not in Grade.values:
        raise ChatError(f"grade must be one of {', '.join(Grade.values)}, not {value!r}")
    turn = conversation.turns.filter(index=index).first()
    if turn is None:
        raise ChatError(f"conversation {conversation.pk} has no turn {index}")
    if turn.state != ChatTurn.State.DONE:
        raise ChatError(f"turn {index} has no answer to grade ({turn.get_state_display()})")
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
        unit="graded turns",
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
