"""Gold checks a script cannot pass without reading: the default gold pairs the candidate's answer
with a decoy (evalsite/annotation/decoys.py), and strategies that read only the page (the longer
answer, "same opening, pick the longer", the more structured one, the one using more of the
prompt's words, ...) are right about half the time on them, where on the degraded copies they
replace they were right every time."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from evalsite.annotation.decoys import content_words, decoy, layout

ROOT = Path(__file__).resolve().parent.parent
ANSWERS = [json.loads(line) for line in (ROOT / "data" / "train.jsonl").read_text().splitlines() if line.strip()]


def old_degrade(text: str, seed: int) -> str:
    """The degraded copy the default gold used to be: the first 12 words kept, the rest shuffled
    and cut to a third."""
    words = text.split()
    head, tail = words[:12], words[12:]
    random.Random(seed).shuffle(tail)
    return " ".join(head + tail[: max(8, len(tail) // 3)])


def blocks(text: str) -> int:
    return len(layout(text)[0]) + layout(text)[1]


def opening(text: str, n: int = 6) -> list[str]:
    return text.split()[:n]


# each strategy sees the prompt and the two answers as the page shows them and picks one:
# True when it picks ``a``
STRATEGIES = {
    "pick the longer": lambda p, a, b: len(a) > len(b),
    "same opening, pick the longer": lambda p, a, b: len(a) > len(b)
    if opening(a) == opening(b)
    else len(a) > len(b),
    "more structure": lambda p, a, b: (blocks(a), len(a)) > (blocks(b), len(b)),
    "more sentences": lambda p, a, b: len(re.split(r"(?<=[.!?])\s+", a)) > len(re.split(r"(?<=[.!?])\s+", b)),
    "more of the prompt's words": lambda p, a, b: sum(w in set(content_words(p)) for w in content_words(a))
    > sum(w in set(content_words(p)) for w in content_words(b)),
    "more distinct words": lambda p, a, b: len(set(content_words(a))) / max(len(content_words(a)), 1)
    > len(set(content_words(b))) / max(len(content_words(b)), 1),
}


def accuracy(make) -> dict[str, float]:
    """Each strategy's share of right picks (the real answer over the worse one) over the 61
    shipped answers, the two answers in a random order (a tie is a coin)."""
    rng = random.Random(20261206)
    right = dict.fromkeys(STRATEGIES, 0.0)
    for i, row in enumerate(ANSWERS):
        prompt, real = row["messages"][0]["content"], row["reference_answer"]
        worse = make(i, real, prompt, [r["reference_answer"] for j, r in enumerate(ANSWERS) if j != i], rng)
        for name, picks_first in STRATEGIES.items():
            if rng.random() < 0.5:
                right[name] += picks_first(prompt, real, worse)
            else:
                right[name] += not picks_first(prompt, worse, real)
    return {name: hits / len(ANSWERS) for name, hits in right.items()}


def test_strategies_that_read_only_the_page_are_right_about_half_the_time_on_the_default_gold():
    new = accuracy(lambda i, real, prompt, donors, rng: decoy(real, prompt, donors, rng))
    old = accuracy(lambda i, real, prompt, donors, rng: old_degrade(real, i))
    assert old["same opening, pick the longer"] == old["pick the longer"] == 1.0, "the degraded copy's tell"
    for name, share in new.items():
        assert 0.3 <= share <= 0.7, (name, share)
    # with such odds a screening of four checks and a pass mark of four is passed by chance
    # (0.7^4 = 24% at the very best), and one of 4 right of 5: far from the 100% a reader gets
    assert max(new.values()) ** 4 < 0.25


def test_a_decoy_keeps_no_opening_words_and_the_real_answers_layout():
    rng = random.Random(5)
    same_layout = 0
    for i, row in enumerate(ANSWERS):
        real = row["reference_answer"]
        donors = [r["reference_answer"] for r in ANSWERS[:i] + ANSWERS[i + 1 :]]
        worse = decoy(real, row["messages"][0]["content"], donors, rng)
        assert opening(worse, 3) != opening(real, 3)
        assert 0.6 <= len(worse) / len(real) <= 1.6
        same_layout += layout(worse)[0] == layout(real)[0]
    assert same_layout / len(ANSWERS) >= 0.5


@pytest.mark.django_db
def test_a_study_serves_decoys_as_its_gold_and_a_page_reading_bot_fails_the_screening(client):
    """The product's path: a study of the shipped answers with gold checks; a crowd participant
    who picks the longer answer off each page (the item page's own HTML) is screened out."""
    from evalsite.annotation import studies
    from evalsite.annotation.models import Comparison
    from evalsite.catalog.models import Prompt, PromptSet, Response, System
    from evalsite.crowd import services as crowd
    from evalsite.crowd.models import Participant

    prompt_set = PromptSet.objects.create(name="shipped")
    candidate = System.objects.create(name="candidate", kind="candidate", backend="imported")
    baseline = System.objects.create(name="baseline", backend="imported")
    for row in ANSWERS[:24]:
        prompt = Prompt.objects.create(prompt_set=prompt_set, external_id=row["id"], messages=row["messages"])
        Response.objects.create(system=candidate, prompt=prompt, text=row["reference_answer"])
        Response.objects.create(system=baseline, prompt=prompt, text="A short reply.")
    study = studies.create_study("gold", candidate, [baseline], prompt_set, gold_rate=0.25)
    studies.start_study(study, random.Random(3))
    gold = list(
        Comparison.objects.filter(study=study, is_gold=True).select_related("candidate_response", "baseline_response")
    )
    assert len(gold) == 6
    for comparison in gold:
        real, worse = comparison.candidate_response.text, comparison.baseline_response.text
        assert worse != real and opening(worse, 3) != opening(real, 3)
    # the longer answer is the real one on fewer gold checks than the screening's pass mark
    longer_right = sum(len(c.candidate_response.text) > len(c.baseline_response.text) for c in gold)
    assert longer_right <= 3
    link = crowd.create_link(study, quota=2, screening_items=4, screening_pass=4)
    arrival = {"PROLIFIC_PID": "a" * 24, "STUDY_ID": "s" * 24, "SESSION_ID": "x"}
    reply = client.get(f"/s/{link.token}/", arrival, follow=True)
    for _ in range(4):  # the screening block: pick the longer answer as the page shows it
        page = BeautifulSoup(reply.content, "html.parser")
        form = page.select_one("form[action$='/judge']")
        answers = [a.get_text(" ", strip=True) for a in page.select(".answer .md")]
        assert len(answers) == 2 and form is not None
        choice = "a" if len(answers[0]) > len(answers[1]) else "b"
        reply = client.post(form["action"], {"choice": choice}, follow=True)
    participant = Participant.objects.get()
    assert participant.status == Participant.Status.SCREENED_OUT
