"""A study with real rows: a prompt set, a candidate and baselines with responses."""

import random
from datetime import timedelta

from django.contrib.auth.models import User
from django.utils import timezone

from evalsite.annotation import answers, studies
from evalsite.annotation.models import Assignment
from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.core.accounts import annotators_group

SAMPLE_RATE = None  # set by the claim_path fixture: every started study is sampled at this rate


def make_study(
    n_prompts=10,
    baselines=("alpaca-65b", "davinci-003"),
    overlap=1,
    gold_rate=0.0,
    annotators=2,
    name="lima-study",
    start=True,
):
    prompt_set = PromptSet.objects.create(name=f"{name}-prompts")
    candidate = System.objects.create(name="lima-65b", kind="candidate", backend="imported")
    systems = [System.objects.create(name=b, backend="imported") for b in baselines]
    for i in range(n_prompts):
        prompt = Prompt.objects.create(
            prompt_set=prompt_set, external_id=f"p{i}", messages=[{"role": "user", "content": f"Question number {i}?"}]
        )
        Response.objects.create(
            system=candidate, prompt=prompt, text=f"A careful, complete answer to question {i}. " * 3
        )
        for k, system in enumerate(systems):
            Response.objects.create(system=system, prompt=prompt, text=f"A short reply about {i}, take {k}.")
    study = studies.create_study(name, candidate, systems, prompt_set, overlap=overlap, gold_rate=gold_rate)
    users = [member(study, f"ann{k}") for k in range(annotators)]
    if start:
        studies.start_study(study)
        if SAMPLE_RATE is not None:  # no judge: every comparison equally unsure
            studies.plan_sampling(study, {}, SAMPLE_RATE, random.Random(0))
    return study, users


def member(study, name: str) -> User:
    """An annotator account (password pw-NAME-secret) that may work on the study."""
    user = User.objects.create_user(name, password=f"pw-{name}-secret")
    user.groups.add(annotators_group())
    study.annotators.add(user)
    return user


def vote(user, comparison, choice, seconds=None, on_left=True):
    """The annotator's judgment through the path the page takes (an assignment, then submit),
    with the candidate on the left unless said; ``seconds`` spent reading it."""
    now = timezone.now()
    assignment = Assignment.objects.create(
        comparison=comparison,
        study_id=comparison.study_id,
        annotator=user,
        candidate_on_left=on_left,
        claimed_at=now,
        expires_at=now + timedelta(hours=1),
        shown_at=None if seconds is None else now - timedelta(seconds=seconds),
    )
    answers.submit(assignment.pk, user, choice)
