"""An arena's life: a person's prompt checked as an import's would be, two of the study's systems
drawn for it (the pairs that can still change the ranking's answer first, as a ranking study's
claims go; else any pair), the prompt sent to both through the chat's path (a worker of the live
queue writes each answer as it is generated), follow-ups to both, the vote, and the vote recorded
as a comparison of the study, so the same ranking counts it (evalsite/dashboard/ranking.py).

What the ranking then estimates: the chance that a person prefers one system's answer to the
other's over the prompts people brought to this arena (not over a fixed prompt set); "both are
bad" counts as a tie and is reported apart. Where staff review prompts, a battle counts once its
prompt is approved; a rejected prompt leaves the collected set and its vote is never counted."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from evalsite.annotation import answers, claims
from evalsite.annotation.models import Assignment, Comparison, Study
from evalsite.annotation.studies import StudyError, create_ranking_study, ranked_systems
from evalsite.answering import chat
from evalsite.answering.models import ChatTurn, Conversation
from evalsite.arena.models import Battle
from evalsite.catalog.io import ImportFailed, parse_prompt_line
from evalsite.catalog.models import Prompt, PromptSet, Response, System

SOURCE = "arena"  # the collected prompts' source


class ArenaError(StudyError):
    """What a person asked of the arena cannot be done; the message says why."""


def create_arena(name: str, systems: list[System], *, review: bool = False, topics: list[str] | None = None) -> Study:
    """An open arena of ``systems`` (two or more) whose collected prompts become the prompt set
    NAME-prompts. ``review``: a prompt counts only once staff approve it; ``topics``: what a
    person picks from (none: any)."""
    imported = [s.name for s in systems if s.backend == "imported"]
    if imported:
        raise ArenaError(f"{', '.join(imported)} only have imported responses: an arena's systems answer new prompts")
    topics = [t.strip() for t in (topics or []) if t.strip()]
    if any(len(t) > 50 for t in topics):
        raise ArenaError("a topic is longer than 50 characters")
    set_name = f"{name}-prompts"[:100]
    if PromptSet.objects.filter(name=set_name).exists():
        raise ArenaError(f"a prompt set named {set_name!r} exists: name the arena otherwise")
    with transaction.atomic():  # a ranking of the systems (its checks), on the set it collects
        prompt_set = PromptSet.objects.create(
            name=set_name,
            purpose=PromptSet.Purpose.TEST,
            description=f"Prompts people brought to arena {name} (source {SOURCE!r}).",
        )
        study = create_ranking_study(name, systems, prompt_set, overlap=1, gold_rate=0.0, at_least=2)
        fields = {"kind": Study.Kind.ARENA, "review_prompts": review, "topics": topics, "status": Study.Status.OPEN}
        Study.objects.filter(pk=study.pk).update(**fields)
        for field, value in fields.items():
            setattr(study, field, value)
    return study


def open_battle(study: Study, person: User) -> Battle | None:
    return (
        Battle.objects.filter(study=study, person=person, voted_at__isnull=True)
        .select_related("first_conversation", "second_conversation", "first_system", "second_system")
        .first()
    )


def check_prompt(study: Study, text: str, topic: str = "") -> tuple[str, str]:
    """The prompt and topic as they will be stored, or ArenaError saying what is wrong: the same
    checks as a prompt file's line (non-empty, IMPORT_MAX_PROMPT_CHARS), and a topic the study
    offers."""
    text = text.strip()
    if not text:
        raise ArenaError("the prompt is empty")
    try:
        parse_prompt_line(Path("arena"), 1, {"messages": [{"role": "user", "content": text}], "source": SOURCE})
    except ImportFailed as exc:
        raise ArenaError(str(exc).removeprefix("arena:1: ")) from None
    if study.topics and topic not in study.topics:
        raise ArenaError(f"pick a topic: {', '.join(study.topics)}")
    return text, topic if study.topics else ""


def draw_pair(study: Study, rng: random.Random) -> tuple[System, System]:
    """Two of the arena's systems: one of the pairs that can still change the ranking's answer (9
    times in 10, as a ranking study's claims), else any pair, uniformly."""
    systems = ranked_systems(study)
    by_pk = {s.pk: s for s in systems}
    if rng.random() >= claims.RANKING_UNIFORM_SHARE and (pair := claims.active_pair(study, rng)):
        return by_pk[pair[0]], by_pk[pair[1]]
    i, j = sorted(rng.sample(range(len(systems)), 2))
    return systems[i], systems[j]


def start_battle(study: Study, person: User, text: str, topic: str = "", rng: random.Random | None = None) -> Battle:
    """The person's prompt put to two of the arena's systems: the prompt joins the collected set,
    each system gets a conversation, and the message goes to both (the live queue writes the
    answers). Refused while the person has a battle not voted on."""
    rng = rng or random.Random()
    if study.kind != Study.Kind.ARENA or study.status != Study.Status.OPEN:
        raise ArenaError(f"{study.name} is not an open arena")
    text, topic = check_prompt(study, text, topic)
    if open_battle(study, person) is not None:
        raise ArenaError("vote on the two answers you have first")
    first, second = draw_pair(study, rng)
    try:
        with transaction.atomic():
            prompt = Prompt.objects.create(
                prompt_set=study.prompt_set,
                external_id=f"arena-{timezone.now():%Y%m%d%H%M%S}-{rng.getrandbits(40):010x}",
                messages=[{"role": "user", "content": text}],
                source=SOURCE,
                tags=[topic] if topic else [],
            )
            conversations = [Conversation.objects.create(system=s, staff=person) for s in (first, second)]
            battle = Battle.objects.create(
                study=study,
                person=person,
                prompt=prompt,
                prompt_text=text,
                topic=topic,
                first_system=first,
                second_system=second,
                first_on_left=rng.random() < 0.5,
                first_conversation=conversations[0],
                second_conversation=conversations[1],
                review=Battle.Review.PENDING if study.review_prompts else Battle.Review.NONE,
            )
            for conversation in conversations:
                chat.request_answer(chat.send(conversation, text, graded=False))
    except IntegrityError:  # a second tab's prompt at the same moment: one open battle a person
        raise ArenaError("vote on the two answers you have first") from None
    return battle


def sides(battle: Battle) -> tuple[Conversation, Conversation]:
    """(left, right) as the person sees them."""
    first, second = battle.first_conversation, battle.second_conversation
    return (first, second) if battle.first_on_left else (second, first)


def _turns(battle: Battle, *states: str):
    """The battle's turns on both sides in these states."""
    conversations = [battle.first_conversation_id, battle.second_conversation_id]
    return ChatTurn.objects.filter(conversation__in=conversations, state__in=states)


def answered(battle: Battle) -> bool:
    """Whether both systems have finished their last answer (written or failed)."""
    return not _turns(battle, *ChatTurn.UNFINISHED).exists()


def follow_up(battle: Battle, text: str) -> None:
    """The person's next message, to both systems, once both have answered."""
    if battle.voted_at is not None:
        raise ArenaError("this battle is over: start a new one")
    if not answered(battle):
        raise ArenaError("wait for both answers, then ask the next question")
    text, _ = check_prompt(battle.study, text, battle.topic)
    with transaction.atomic():
        for conversation in (battle.first_conversation, battle.second_conversation):
            chat.request_answer(chat.send(conversation, text, graded=False))


CHOICES = {"a": "left", "b": "right", "tie": Battle.Outcome.TIE, "both_bad": Battle.Outcome.BOTH_BAD}


def vote(battle: Battle, choice: str) -> Battle:
    """The person's vote (a: the left answer, b: the right one, tie, both_bad), once both answers
    are in; then the systems' names may be shown. Counted at once, or once staff approve the
    prompt where they review prompts."""
    if choice not in CHOICES:
        raise ArenaError("choose A, B, neither, or both are bad")
    if not answered(battle):
        raise ArenaError("wait for both answers before you vote")
    if _turns(battle, ChatTurn.State.FAILED).exists():
        raise ArenaError("a system did not answer: this battle cannot be voted on; start a new one")
    picked = CHOICES[choice]
    outcome: str = picked
    if picked in ("left", "right"):
        first_picked = (picked == "left") == battle.first_on_left
        outcome = Battle.Outcome.FIRST if first_picked else Battle.Outcome.SECOND
    now = timezone.now()
    with transaction.atomic():
        if not Battle.objects.filter(pk=battle.pk, voted_at__isnull=True).update(outcome=outcome, voted_at=now):
            battle.refresh_from_db()
            return battle  # voted already (the page sent twice)
        battle.outcome, battle.voted_at = outcome, now
        if battle.review in (Battle.Review.NONE, Battle.Review.APPROVED):
            record(battle)
    return battle


def voted(study: Study, person: User) -> int:
    """The person's battles that count as work done (what a crowd link's quota counts): voted,
    and not on a prompt staff rejected (a battle left because a system failed has no vote)."""
    battles = Battle.objects.filter(study=study, person=person).exclude(outcome="")
    return battles.exclude(review=Battle.Review.REJECTED).count()


def progress(study: Study, person: User) -> tuple[int, int]:
    """An arena's (done, left) for one person (annotation.kinds): battles voted, and always more."""
    return voted(study, person), claims.LEFT_CAP


def abandon(battle: Battle) -> Battle:
    """Close a battle a system failed to answer (never counted), so that the person may ask again."""
    if battle.voted_at is None and not _turns(battle, ChatTurn.State.FAILED).exists():
        raise ArenaError("vote on the two answers first (a battle is left only when a system failed to answer)")
    Battle.objects.filter(pk=battle.pk, voted_at__isnull=True).update(voted_at=timezone.now())
    battle.refresh_from_db()
    return battle


def record(battle: Battle) -> Comparison:
    """The voted battle as a comparison of its study: both answers stored as responses to the
    collected prompt (follow-ups as the prompt's later turns and the responses' turns), and the
    vote as the person's judgment through the annotators' own path (claim, then submit)."""
    study, prompt = battle.study, battle.prompt
    if prompt is None:
        raise ArenaError("the prompt was rejected: the battle is not counted")
    first_turns = list(battle.first_conversation.turns.order_by("index"))
    second_turns = list(battle.second_conversation.turns.order_by("index"))
    follow_ups = [t.user_text for t in first_turns[1:]]
    if follow_ups and prompt.follow_ups != follow_ups:
        Prompt.objects.filter(pk=prompt.pk).update(follow_ups=follow_ups)
    responses = []
    for system, turns in ((battle.first_system, first_turns), (battle.second_system, second_turns)):
        response, _ = Response.objects.get_or_create(
            system=system,
            prompt=prompt,
            sample_index=0,
            defaults={
                "text": turns[0].assistant_text,
                "finish_reason": turns[0].finish_reason or "stop",
                "turns": [t.assistant_text for t in turns[1:]],
            },
        )
        responses.append(response)
    order = (Comparison.objects.filter(study=study).aggregate(n=Max("draw_order"))["n"] or 0) + 1
    comparison = Comparison.objects.create(
        study=study,
        prompt=prompt,
        first_system=battle.first_system,
        baseline=battle.second_system,
        candidate_response=responses[0],
        baseline_response=responses[1],
        draw_order=order,
        slots_taken=1,
    )
    assignment = Assignment.objects.create(
        comparison=comparison,
        study=study,
        annotator=battle.person,
        candidate_on_left=battle.first_on_left,
        claimed_at=battle.created_at,
        expires_at=timezone.now() + timedelta(minutes=5),
        shown_at=battle.created_at,
    )
    answers.submit(assignment.pk, battle.person, battle.choice)
    Battle.objects.filter(pk=battle.pk).update(comparison=comparison)
    battle.comparison = comparison
    return comparison


def review(battle: Battle, approve: bool) -> Battle:
    """Staff's decision on a prompt waiting for review: approved, the battle counts (if voted:
    now; else when it is); rejected, the prompt leaves the collected set and the vote never counts."""
    if battle.review != Battle.Review.PENDING:
        raise ArenaError(f"battle {battle.pk} is {battle.get_review_display()}")
    with transaction.atomic():
        if approve:
            battle.review = Battle.Review.APPROVED
            Battle.objects.filter(pk=battle.pk).update(review=battle.review)
            if battle.voted_at is not None:
                record(battle)
        else:
            prompt = battle.prompt
            battle.review, battle.prompt = Battle.Review.REJECTED, None
            Battle.objects.filter(pk=battle.pk).update(review=battle.review, prompt=None)
            if prompt is not None:
                prompt.delete()
    return battle
