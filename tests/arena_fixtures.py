"""An arena's systems on a local OpenAI-compatible server: each answers in its own words (never
its name, so a page that showed the name before the vote would be caught)."""

from __future__ import annotations

from evalsite.catalog.models import System

WORDS = {"model-a": "Plainly put,", "model-b": "In short,", "model-c": "Well,"}


def arena_responder(body: dict) -> str:
    question = body["messages"][-1]["content"]
    turn = sum(1 for m in body["messages"] if m["role"] == "user")
    return f"{WORDS[body['model']]} here is answer {turn} to: {question} It has several words to stream."


def arena_systems(stub, names=("alpha", "bravo", "charlie")) -> list[System]:
    return [
        System.objects.create(
            name=name,
            backend="openai_compat",
            backend_config={"base_url": stub.url, "model": model, "timeout": 10, "max_retries": 0},
        )
        for name, model in zip(names, WORDS, strict=False)
    ]
