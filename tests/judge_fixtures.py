import re
from decimal import Decimal

from evalsite.judging.models import JudgeConfig
from tests.annotation_fixtures import make_study

CANDIDATE_MARK = "careful, complete answer"


def fair_judge(body: dict) -> str:
    """Prefers the candidate's (longer, careful) answer, whichever side it is on."""
    text = body["messages"][0]["content"]
    a = re.search(r"Answer A:\n(.*?)\n\nAnswer B:", text, re.S).group(1)
    return "Answer A is significantly better." if CANDIDATE_MARK in a else "Answer B is significantly better."


def first_position_judge(body: dict) -> str:
    return "Answer A is significantly better."


def judge_config(stub, name="gpt-4-stub", **extra) -> JudgeConfig:
    values = {
        "model": "gpt-4",
        "base_url": stub.url,
        "api_key_env": "",
        "concurrency": 4,
        "timeout": 5,
        "max_retries": 2,
        **extra,
    }
    return JudgeConfig.objects.create(name=name, **values)


def judged_study(n_prompts=4, baselines=("alpaca-65b",)):
    study, users = make_study(n_prompts=n_prompts, baselines=baselines, overlap=1)
    return study


PRICE = {"price_input_per_1k": Decimal("0.03"), "price_output_per_1k": Decimal("0.06")}
