"""Figure 1 with each vote weighted by its annotator's Dawid-Skene reliability: a rule on the
dashboard, off by default; an annotator who always says tie weighs less than two who agree."""

from __future__ import annotations

import numpy as np
import pytest
from bs4 import BeautifulSoup
from django.contrib.auth.models import User

from evalsite.annotation.models import Comparison
from evalsite.annotation.quality import annotator_reliability
from evalsite.dashboard import data
from tests.annotation_fixtures import make_study, vote

pytestmark = pytest.mark.django_db


def three_raters():
    """12 comparisons, three annotators each: ann0 and ann1 agree on the true outcomes (8
    candidate, 4 baseline) except that ann1 errs on two; ann2 says tie on every one."""
    study, (a, b, c) = make_study(n_prompts=12, baselines=("alpaca-65b",), overlap=3, annotators=3)
    truth = ["a"] * 8 + ["b"] * 4
    for n, comparison in enumerate(Comparison.objects.filter(study=study).order_by("prompt_id")):
        vote(a, comparison, truth[n])
        vote(b, comparison, truth[n] if n not in (3, 9) else ("b" if truth[n] == "a" else "a"))
        vote(c, comparison, "tie")
    return study


def test_reliability_weights_move_figure_1_toward_the_reliable_annotators(staff_client):
    study = three_raters()
    every = data.dashboard(study, "all")["human"][0]
    weighted = data.dashboard(study, "reliability")
    row, weights = weighted["human"][0], weighted["reliability"]
    assert weights["ann2"] < min(weights["ann0"], weights["ann1"]) - 0.3
    # each comparison counts once, as its weighted vote shares (computed here by hand)
    votes = [
        (cmp, user.username, j.outcome)
        for cmp in Comparison.objects.filter(study=study)
        for user in User.objects.filter(judgments__comparison=cmp)
        for j in cmp.judgments.filter(annotator=user)
    ]
    assert annotator_reliability(votes) == weights
    shares = []
    for cmp in Comparison.objects.filter(study=study):
        vector = np.zeros(3)
        for j in cmp.judgments.select_related("annotator"):
            vector[{"candidate": 0, "tie": 1, "baseline": 2}[j.outcome]] += weights[j.annotator.username]
        shares.append(vector / vector.sum())
    expected = np.mean(shares, axis=0)
    assert (row["win"], row["tie"], row["loss"]) == pytest.approx(tuple(expected))
    assert row["win"] > every["win"] and row["tie"] < every["tie"]
    low, high = row["win_ci"]
    assert low < row["win"] < high and row["n"] == 12

    # on the page: off by default; the rule, once picked, says the weights
    page = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/").content, "html.parser")
    assert page.select_one("select[name=rule] option[selected]")["value"] == "majority"
    page = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/?rule=reliability").content, "html.parser")
    rule = page.select_one("#rule").get_text(" ", strip=True)
    assert f"ann2 {weights['ann2']:.2f}" in rule and "Dawid-Skene" in rule
    assert page.select_one("select[name=rule] option[selected]")["value"] == "reliability"
    figure = page.select_one("svg[aria-label^='Figure 1']")
    assert f"{row['win'] * 100:.0f}%" in [t.get_text() for t in figure.find_all("text")]


def test_without_overlap_the_reliability_rule_says_so_and_counts_every_vote(staff_client):
    study, (a, _) = make_study(n_prompts=3, baselines=("alpaca-65b",), overlap=1)
    for comparison in Comparison.objects.filter(study=study):
        vote(a, comparison, "a")
    result = data.dashboard(study, "reliability")
    assert result["reliability"] is None and result["human"][0]["win"] == 1.0
    page = BeautifulSoup(staff_client.get(f"/dashboard/{study.name}/?rule=reliability").content, "html.parser")
    assert "need comparisons with two or more votes" in page.select_one("#rule").get_text(" ", strip=True)
