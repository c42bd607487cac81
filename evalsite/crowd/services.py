"""What happens to a crowd participant: arriving by the study's link, the screening block, the
quota, the end (completed or screened out), and the per-participant export a team uploads to the
platform for approvals and bonuses."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from evalsite.annotation.kinds import study_kind
from evalsite.annotation.models import Comparison, HumanJudgment, Study
from evalsite.annotation.quality import faster_than_reading, with_page_chars
from evalsite.annotation.studies import set_excluded
from evalsite.crowd.models import CrowdLink, Participant
from evalsite.crowd.platforms import PLATFORMS, PROLIFIC

log = logging.getLogger(__name__)


class CrowdError(Exception):
    """A participant's visit cannot go on; the message says why (shown on a page, never an account)."""


class Preview(Exception):
    """An MTurk worker previewing the HIT: show the task, make no account."""


def create_link(
    study: Study,
    platform: str = PROLIFIC.key,
    quota: int = 20,
    screening_items: int = 0,
    screening_pass: int = 0,
    completion_url: str = "",
    completion_code: str = "",
    only_verified: bool = False,
) -> CrowdLink:
    """The study's crowd link (one per study; a second call changes its rules)."""
    if platform not in PLATFORMS:
        raise CrowdError(f"platform must be one of {', '.join(PLATFORMS)}")
    if study.status != Study.Status.OPEN:
        raise CrowdError(f"study {study.name} is {study.status}: start it before making its crowd link")
    if not study_kind(study).pairs:
        raise CrowdError(f"study {study.name} is a {study.kind} study: crowd links serve pairwise studies")
    if quota < 1:
        raise CrowdError("quota must be at least 1 item")
    if study.kind == Study.Kind.ARENA and screening_items:
        raise CrowdError(
            f"{study.name} is an arena: people bring their own prompts, so there are no gold checks to "
            "screen with (make its link with 0 screening items; staff review prompts with create_arena --review)"
        )
    if screening_pass > screening_items:
        raise CrowdError(f"screening pass mark {screening_pass} is more than its {screening_items} items")
    gold = Comparison.objects.filter(study=study, is_gold=True).count()
    if screening_items > gold:
        raise CrowdError(
            f"screening needs {screening_items} gold checks but study {study.name} has {gold} "
            "(create it with a higher gold rate)"
        )
    if completion_url and not completion_url.startswith(("https://", "http://")):
        raise CrowdError("completion URL must start with https:// (or http://)")
    fields = {
        "platform": platform,
        "quota": quota,
        "screening_items": screening_items,
        "screening_pass": screening_pass,
        "completion_url": completion_url,
        "only_verified": only_verified,
    }
    if completion_code:
        fields["completion_code"] = completion_code
    link, _ = CrowdLink.objects.update_or_create(study=study, defaults=fields)
    return link


def _new_arrival_allowed(link: CrowdLink, address: str) -> bool:
    """At most CROWD_NEW_PARTICIPANTS_PER_ADDRESS new participants per client address per
    CROWD_ARRIVAL_WINDOW_SECONDS on a link (counted atomically in the shared cache; a returning
    participant is never counted). Anyone who sees a link can make up well-formed ids: this bounds
    how many one machine can mint. When the cache is down, arrivals go on (and it is logged)."""
    key = "crowd-arrivals:" + hashlib.sha256(f"{link.pk}|{address}".encode()).hexdigest()[:32]
    try:
        cache.add(key, 0, settings.CROWD_ARRIVAL_WINDOW_SECONDS)
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, settings.CROWD_ARRIVAL_WINDOW_SECONDS)
        count = 1
    except Exception as exc:  # noqa: BLE001  (any cache backend's connection error)
        log.error("crowd arrival limit: the cache cannot be reached (%s); letting the arrival in", exc)
        return True
    return count <= settings.CROWD_NEW_PARTICIPANTS_PER_ADDRESS


def arrive(link: CrowdLink, params: dict[str, str], address: str = "") -> Participant:
    """The participant for the platform id in the link's query, made the first time (without a
    password) and found again on any later visit, from any device. Two first visits at once (two
    tabs) give the same participant: the second insert fails on the unique constraint and reads.
    A new participant from an ``address`` that made too many already is refused (CrowdError)."""
    kind = link.kind
    id_name, study_name, session_name = kind.parameters
    external = (params.get(id_name) or "").strip()
    if kind.is_preview(params):
        raise Preview()
    if not external:
        raise CrowdError(f"this link has no {id_name}: open the study from {kind.label}")
    if not kind.id_pattern.fullmatch(external):
        raise CrowdError(f"{id_name} is not a {kind.label} id; open the study from the platform")
    if link.study.status != Study.Status.OPEN:
        raise CrowdError("this study is not taking participants now")
    found = Participant.objects.filter(link=link, external_id=external).select_related("user").first()
    if found:
        return found
    if address and not _new_arrival_allowed(link, address):
        raise CrowdError("too many new participants from this address; try again later")
    try:
        with transaction.atomic():
            user = User(username=f"{link.platform}-{link.pk}-{external}"[:150])
            user.set_unusable_password()
            user.save()
            participant = Participant.objects.create(
                link=link,
                external_id=external,
                user=user,
                platform_study=(params.get(study_name) or "")[:64],
                session=(params.get(session_name) or "")[:64],
            )
            link.study.annotators.add(user)
            if not participant.counts:  # a link that counts verified participants only
                set_excluded(link.study, user, True)
    except IntegrityError:  # the other tab made it first
        return Participant.objects.select_related("user").get(link=link, external_id=external)
    return participant


# what a participant's browser session holds once they arrive by the link (crowd.views.arrive)
SESSION_KEY = "crowd_participant"
TOKEN_KEY = "crowd_token"


def session_participant(session, user: User, study: Study | None = None) -> Participant | None:
    """The crowd participant this session belongs to (it arrived by the link, logged in as
    ``user``), on ``study``'s link if given; None for anyone else."""
    pk = session.get(SESSION_KEY)
    if not pk or not user.is_authenticated:
        return None
    found = Participant.objects.select_related("link__study", "user").filter(pk=pk, user=user)
    if study is not None:
        found = found.filter(link__study=study)
    return found.first()


@dataclass(frozen=True)
class Stage:
    """Where a participant is: 'screening' (gold checks only), 'work', or an end."""

    name: str
    done: int  # items judged after the screening block


def _counts(participant: Participant) -> dict[str, int]:
    study = participant.link.study
    if study.kind == Study.Kind.ARENA:  # people bring their prompts: an item is a battle voted (no gold)
        return {"total": study_kind(study).progress(study, participant.user)[0], "gold": 0}
    return HumanJudgment.objects.filter(annotator=participant.user, comparison__study=participant.link.study).aggregate(
        total=Count("id"),
        gold=Count("id", filter=Q(comparison__is_gold=True)),
    )


def stage(participant: Participant) -> Stage:
    """Where the participant stands, ending them (completed, screened out) when the rules say so."""
    link = participant.link
    counts = _counts(participant)
    screening = min(counts["gold"], link.screening_items)
    done = counts["total"] - screening
    if participant.status != Participant.Status.ACTIVE:
        return Stage(participant.status, done)
    if counts["gold"] < link.screening_items:
        return Stage("screening", done)
    if link.screening_items and _screening_right(participant) < link.screening_pass:
        _finish(participant, Participant.Status.SCREENED_OUT)
        return Stage(Participant.Status.SCREENED_OUT, done)
    if done >= link.quota:
        _finish(participant, Participant.Status.COMPLETED)
        return Stage(Participant.Status.COMPLETED, done)
    return Stage("work", done)


def _screening_right(participant: Participant) -> int:
    """Right answers among the first screening_items gold checks judged (the screening block)."""
    first = HumanJudgment.objects.filter(
        annotator=participant.user, comparison__study=participant.link.study, comparison__is_gold=True
    ).order_by("created_at", "pk")[: participant.link.screening_items]
    return sum(1 for outcome, better in first.values_list("outcome", "comparison__gold_better") if outcome == better)


def _finish(participant: Participant, status: str) -> None:
    with transaction.atomic():
        updated = Participant.objects.filter(pk=participant.pk, status=Participant.Status.ACTIVE).update(
            status=status, finished_at=timezone.now()
        )
        if updated and status == Participant.Status.SCREENED_OUT:
            set_excluded(participant.link.study, participant.user, True)  # their votes leave the results
    participant.refresh_from_db(fields=["status", "finished_at"])


def end_code(participant: Participant) -> str:
    """The code the participant was (or is) given; none for one who returned the study."""
    link = participant.link
    if participant.status == Participant.Status.RETURNED:
        return ""
    return link.screened_out_code if participant.status == Participant.Status.SCREENED_OUT else link.completion_code


# --- the export a team uploads -------------------------------------------------------------------

EXPORT_COLUMNS = [
    "participant_id",
    "status",
    "platform_check",
    "items_done",
    "median_seconds",
    "reading_floor_seconds",
    "faster_than_reading",
    "total_seconds",
    "gold_seen",
    "gold_accuracy",
    "left_pick_share",
    "completion_code",
    "study_id",
    "session_id",
    "started_at",
    "finished_at",
]


def participant_rows(link: CrowdLink) -> list[dict[str, object]]:
    """One row per participant, the platform's participant id first (Prolific's bulk approval and
    bonus uploads key on it). Times and shares over the judgments after the screening block."""
    study = link.study
    excluded = set(study.excluded.values_list("pk", flat=True))
    rows = []
    participants = link.participants.select_related("user").order_by("started_at", "pk")
    judgments: dict[int, list[tuple]] = {}
    for row in (
        with_page_chars(HumanJudgment.objects.filter(comparison__study=study, annotator__participant__link=link))
        .order_by("created_at", "pk")
        .values_list(
            "annotator_id",
            "pk",
            "comparison__is_gold",
            "outcome",
            "comparison__gold_better",
            "seconds",
            "picked_side",
            "page_chars",
        )
    ):
        judgments.setdefault(row[0], []).append(row[1:])
    for participant in participants:
        own = judgments.get(participant.user_id, [])  # (pk, is_gold, outcome, gold_better, seconds, side, chars)
        gold = [j for j in own if j[1]]
        screening = {j[0] for j in gold[: link.screening_items]}
        rest = [j for j in own if j[0] not in screening]
        seconds = [j[4] for j in rest]
        sided = [j[5] for j in rest if j[5] in ("left", "right")]
        # the reading floor over every item they judged (the screening's too: a bot skims those alike)
        floor, too_fast = faster_than_reading([j[4] for j in own], [j[6] for j in own])
        status = participant.status
        if participant.user_id in excluded and status != Participant.Status.SCREENED_OUT:
            status = Participant.Status.EXCLUDED
        rows.append(
            {
                "participant_id": participant.external_id,
                "status": status,
                "platform_check": participant.platform_check,
                # an arena's items are its battles voted (one waiting for review too), as its quota counts them
                "items_done": _counts(participant)["total"] if study.kind == Study.Kind.ARENA else len(rest),
                "median_seconds": round(statistics.median(seconds), 1) if seconds else "",
                "reading_floor_seconds": round(floor, 1) if floor is not None else "",
                "faster_than_reading": "yes" if too_fast else "",
                "total_seconds": round(sum(seconds), 1),
                "gold_seen": len(gold),
                "gold_accuracy": round(sum(1 for j in gold if j[2] == j[3]) / len(gold), 3) if gold else "",
                "left_pick_share": round(sided.count("left") / len(sided), 3) if sided else "",
                "completion_code": end_code(participant) if status != Participant.Status.ACTIVE else "",
                "study_id": participant.platform_study,
                "session_id": participant.session,
                "started_at": participant.started_at.isoformat(timespec="seconds"),
                "finished_at": participant.finished_at.isoformat(timespec="seconds") if participant.finished_at else "",
            }
        )
    return rows


def export_csv(link: CrowdLink) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(participant_rows(link))
    return out.getvalue()


# --- what the platform knows: returned and timed-out submissions ----------------------------------

# Prolific's submission statuses (docs.prolific.com, API reference, "Submission object"): RESERVED,
# ACTIVE, TIMED-OUT, AWAITING REVIEW, APPROVED, RETURNED, REJECTED, SCREENED OUT. A participant
# who returned their submission, or whose time ran out, left without being paid (the platform's
# left_statuses).


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def read_submissions(path: Path) -> list[tuple[str, str]]:
    """(participant id, status) from Prolific's submissions: the CSV the study's page exports
    ("Participant id", "Status", any other columns; a BOM and CRLF read) or the JSON the API's
    list of submissions answers ({"results": [{"participant_id", "status"}, ...]})."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CrowdError(f"{path}: cannot be read ({exc})") from None
    if text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CrowdError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
        rows = data.get("results", []) if isinstance(data, dict) else data
        out = []
        for n, row in enumerate(rows):
            if not isinstance(row, dict) or not row.get("participant_id") or not row.get("status"):
                raise CrowdError(f"{path}: result {n}: needs participant_id and status")
            out.append((str(row["participant_id"]), str(row["status"]).upper()))
        return out
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    columns = {_key(name): i for i, name in enumerate(header or [])}
    if "participantid" not in columns or "status" not in columns:
        raise CrowdError(f"{path}:1: needs the columns 'Participant id' and 'Status' (Prolific's export)")
    out = []
    for number, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(columns["participantid"], columns["status"]):
            raise CrowdError(f"{path}:{number}: {len(row)} fields, fewer than the header's")
        out.append((row[columns["participantid"]].strip(), row[columns["status"]].strip().upper()))
    return out


def set_platform_check(participant: Participant, check: str) -> bool:
    """Record what the platform says of a participant and let their votes count, or not,
    accordingly (a screened-out participant's never count; a participant staff excluded by hand
    stays excluded). Returns whether anything changed."""
    counted_before = participant.counts
    if participant.platform_check == check:
        return False
    with transaction.atomic():
        Participant.objects.filter(pk=participant.pk).update(platform_check=check)
        participant.platform_check = check
        if participant.counts != counted_before and participant.status != Participant.Status.SCREENED_OUT:
            set_excluded(participant.link.study, participant.user, not participant.counts)
    return True


@dataclass(frozen=True)
class Reconciled:
    known: int  # newly found on the platform's list
    unknown: list[str]  # ids here the platform does not know: their votes are left out
    returned: int  # marked returned or timed out
    not_here: list[str]  # ids in the file that never arrived by the link


def reconcile(link: CrowdLink, path: Path) -> Reconciled:
    """Compare the link's participants with the platform's submissions (Prolific's export or the
    API's list): an id the platform knows is verified (its votes count again if they waited for
    it); an id it does not know is unverified and its votes leave every figure until staff accept
    it (``accept``); those who returned or timed out are marked returned. The whole file is read
    and checked before anything is written."""
    rows = read_submissions(path)
    listed = {pid for pid, _ in rows}
    participants = list(link.participants.select_related("user", "link__study"))
    known = unknown = 0
    unknown_ids = []
    with transaction.atomic():
        for participant in participants:
            if participant.external_id in listed:
                if participant.platform_check in (Participant.PlatformCheck.PENDING, Participant.PlatformCheck.UNKNOWN):
                    known += set_platform_check(participant, Participant.PlatformCheck.KNOWN)
            elif participant.platform_check != Participant.PlatformCheck.ACCEPTED:
                unknown += set_platform_check(participant, Participant.PlatformCheck.UNKNOWN)
                unknown_ids.append(participant.external_id)
        marked, not_here = _mark_returned(link, rows)
    return Reconciled(known, unknown_ids, marked, not_here)


def accept(link: CrowdLink, external_id: str) -> Participant:
    """Staff accept a participant the platform does not know (checked by hand): their votes count."""
    participant = link.participants.select_related("user", "link__study").filter(external_id=external_id).first()
    if participant is None:
        raise CrowdError(f"no participant {external_id!r} arrived by the link of study {link.study.name}")
    set_platform_check(participant, Participant.PlatformCheck.ACCEPTED)
    return participant


def mark_returned(link: CrowdLink, path: Path) -> tuple[int, list[str]]:
    """Participants the platform says returned or timed out, still working here: marked returned
    (their votes stay, as a completed participant's do). (marked, ids the link does not know)."""
    return _mark_returned(link, read_submissions(path))


def _mark_returned(link: CrowdLink, rows: list[tuple[str, str]]) -> tuple[int, list[str]]:
    known = {p.external_id: p for p in link.participants.all()}
    unknown = sorted({pid for pid, _ in rows if pid not in known})
    left = [known[pid] for pid, status in rows if status in link.kind.left_statuses and pid in known]
    marked = Participant.objects.filter(pk__in=[p.pk for p in left], status=Participant.Status.ACTIVE).update(
        status=Participant.Status.RETURNED, finished_at=timezone.now()
    )
    return marked, unknown
