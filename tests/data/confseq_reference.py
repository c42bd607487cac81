"""Writes confseq_reference.json: the reference implementation's betting confidence sequences on
fixed sequences, which tests/test_stats_intervals.py compares stats.intervals.betting_cs with.

confseq 0.0.11 (Howard and Waudby-Smith's package) does not build on Python 3.11 from PyPI as it
stands (its build pins pybind11 2.6) and needs NumPy < 2, so the numbers were made once in a
separate virtual environment and are kept here; to make them again:

    apt-get install libboost-dev
    python3.11 -m venv /tmp/csvenv
    /tmp/csvenv/bin/pip install "pybind11>=2.11" scikit-build cmake ninja setuptools wheel
    /tmp/csvenv/bin/pip install --no-build-isolation confseq==0.0.11
    /tmp/csvenv/bin/pip install "numpy<2" "scipy<1.14" matplotlib multiprocess
    /tmp/csvenv/bin/python tests/data/confseq_reference.py
"""

import json
from pathlib import Path

import numpy as np
from confseq.betting import betting_cs, hedged_cs
from confseq.betting_strategies import lambda_predmix_eb

rng = np.random.default_rng(20261206)
sequences = {
    "bernoulli_0.3_x200": (rng.random(200) < 0.3).astype(float),
    "bernoulli_0.03_x120": (rng.random(120) < 0.03).astype(float),
    "beta_2_5_x300": rng.beta(2, 5, size=300),
    "thirds_x150": rng.integers(0, 3, size=150) / 2,
}
out = {}
for name, x in sequences.items():
    low, high = hedged_cs(x, alpha=0.05, running_intersection=True)
    out[name] = {"x": x.tolist(), "low": low.tolist(), "high": high.tolist()}
x = sequences["bernoulli_0.3_x200"]
planned = lambda x, m: lambda_predmix_eb(x, alpha=0.025, fixed_n=150)  # noqa: E731
low, high = betting_cs(
    x, lambdas_fns_positive=planned, lambdas_fns_negative=planned, alpha=0.05, running_intersection=True
)
out["bernoulli_0.3_x200_planned150"] = {"x": x.tolist(), "low": low.tolist(), "high": high.tolist(), "planned_n": 150}
Path(__file__).with_suffix(".json").write_text(json.dumps(out) + "\n")
