"""Blinding checks: do the systems differ in something an annotator can see that is not quality?

In the demo, 34 of 61 candidate answers were cut at the token limit against 15 of 61 baseline
answers: an annotator who notices which answers stop mid-sentence can tell the systems apart, and
the study measures that instead of preference. Checked when a study is created and on its page;
the study still opens (the team decides), with the warning in view."""

from __future__ import annotations

import math

import numpy as np

from evalsite.annotation.models import Study
from evalsite.core.columns import fetch_columns

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
    # the answers' lengths counted in the database, read as columns: never the texts themselves
    # (a study of 100,000 prompts has 600,000 of them)
    col = fetch_columns(
        {
            "system": "r.system_id",
            "cut": "CASE WHEN r.finish_reason = 'length' THEN 1 ELSE 0 END",
            "chars": "LENGTH(r.text)",
        },
        f"""FROM catalog_response r JOIN catalog_prompt p ON p.id = r.prompt_id
            WHERE r.system_id IN ({", ".join(["%s"] * len(systems))}) AND p.prompt_set_id = %s
              AND r.sample_index = 0 AND r.error = ''""",
        "r.id",
        [*(s.pk for s in systems), study.prompt_set_id],
    )
    seen = {s.pk: {key: col[key][col["system"] == s.pk] for key in ("cut", "chars")} for s in systems}
    warnings = []
    ours = seen[study.candidate.pk]
    for baseline in systems[1:]:
        theirs = seen[baseline.pk]
        n_a, n_b = len(ours["cut"]), len(theirs["cut"])
        if not n_a or not n_b:
            continue
        cut_a, cut_b = int(ours["cut"].sum()), int(theirs["cut"].sum())
        if abs(cut_a / n_a - cut_b / n_b) >= MIN_SHARE_GAP and _z(cut_a, n_a, cut_b, n_b) >= MIN_Z:
            warnings.append(
                f"{cut_a} of {n_a} answers of {study.candidate} were cut at the token limit against {cut_b} of "
                f"{n_b} of {baseline}: annotators can tell the systems apart by answers that stop mid-sentence "
                "(raise max_new_tokens for both, or give both the same limit and compare only finished answers)"
            )
        mine, other = float(np.median(ours["chars"])), float(np.median(theirs["chars"]))
        if min(mine, other) > 0 and max(mine, other) / min(mine, other) >= LENGTH_RATIO:
            warnings.append(
                f"answers of {study.candidate} are a median of {mine:.0f} characters against {other:.0f} for "
                f"{baseline}: length alone tells them apart (see the length-controlled win rate)"
            )
    return warnings
