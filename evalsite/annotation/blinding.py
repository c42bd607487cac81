"""Blinding checks: do the systems differ in something an annotator can see that is not quality?

In the demo, 34 of 61 candidate answers were cut at the token limit against 15 of 61 baseline
answers: an annotator who notices which answers stop mid-sentence can tell the systems apart, and
the study measures that instead of preference. Checked when a study is created and on its page;
the study still opens (the team decides), with the warning in view."""

from __future__ import annotations

import math
from statistics import median

from evalsite.annotation.models import Study
from evalsite.catalog.models import Response

# a warning needs a difference this large and this unlikely to be chance (a two-proportion z-test,
# a few lines of arithmetic: scipy is not a dependency)
MIN_SHARE_GAP = 0.15
MIN_Z = 2.0
LENGTH_RATIO = 2.0


def _z(cut_a: int, n_a: int, cut_b: int, n_b: int) -> float:
    pooled = (cut_a + cut_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return abs(cut_a / n_a - cut_b / n_b) / spread if spread else 0.0


def blinding_warnings(study: Study) -> list[str]:
    """One sentence per visible difference between the candidate and a baseline, over the
    study's prompts (first samples): answers cut at the token limit, and answer length."""
    systems = [study.candidate, *study.baselines.order_by("name")]
    rows = Response.objects.filter(
        system__in=systems, prompt__prompt_set=study.prompt_set, sample_index=0, error=""
    ).values_list("system_id", "finish_reason", "text")
    seen: dict[int, dict[str, list]] = {s.pk: {"cut": [], "chars": []} for s in systems}
    for system_id, finish, text in rows:
        seen[system_id]["cut"].append(finish == "length")
        seen[system_id]["chars"].append(len(text))
    warnings = []
    ours = seen[study.candidate.pk]
    for baseline in systems[1:]:
        theirs = seen[baseline.pk]
        n_a, n_b = len(ours["cut"]), len(theirs["cut"])
        if not n_a or not n_b:
            continue
        cut_a, cut_b = sum(ours["cut"]), sum(theirs["cut"])
        if abs(cut_a / n_a - cut_b / n_b) >= MIN_SHARE_GAP and _z(cut_a, n_a, cut_b, n_b) >= MIN_Z:
            warnings.append(
                f"{cut_a} of {n_a} answers of {study.candidate} were cut at the token limit against {cut_b} of "
                f"{n_b} of {baseline}: annotators can tell the systems apart by answers that stop mid-sentence "
                "(raise max_new_tokens for both, or give both the same limit and compare only finished answers)"
            )
        mine, other = median(ours["chars"]), median(theirs["chars"])
        if min(mine, other) > 0 and max(mine, other) / min(mine, other) >= LENGTH_RATIO:
            warnings.append(
                f"answers of {study.candidate} are a median of {mine:.0f} characters against {other:.0f} for "
                f"{baseline}: length alone tells them apart (see the length-controlled win rate)"
            )
    return warnings
