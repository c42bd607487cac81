"""The README's "What a user brings" commands, run as written on files in the published shapes
(written here): if the README names a file or a command that does not work, this fails."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from html import escape
from pathlib import Path

import pytest
import zstandard
from django.core.management import call_command

from evalsite.catalog.models import Prompt, Response
from evalsite.finetune.models import TrainingDataset

ROOT = Path(__file__).resolve().parent.parent
LONG = "Boil the water first, then lower the egg in gently with a spoon so it does not crack. " * 16


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## What a user brings", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def row(**attrs) -> str:
    return "  <row " + " ".join(f'{k}="{escape(str(v), quote=True)}"' for k, v in attrs.items()) + " />\r\n"


def ndjson_zst(rows: list[dict]) -> bytes:
    return zstandard.ZstdCompressor().compress("".join(json.dumps(r) + "\n" for r in rows).encode())


ALPACA = [
    {"instruction": "Give three tips for staying healthy.", "output": "Eat.", "generator": "x", "dataset": "vicuna"},
    {"instruction": "Summarise.", "input": "A long text.", "output": "Short.", "generator": "x", "dataset": "oasst"},
]

FILES = {
    "alpaca_eval.json": lambda: json.dumps(ALPACA, indent=4),
    "gpt4_turbo_outputs.json": lambda: json.dumps(
        [dict(r, output=f"GPT-4 on: {r['instruction']}", generator="gpt4", price_per_example=0.01) for r in ALPACA],
        indent=2,
    ),
    "test.jsonl": lambda: "".join(
        json.dumps(r) + "\n"
        for r in [
            {"conversations": ["Can brain cells move?"], "source": "stackexchange"},
            {"conversations": ["Write a haiku about autumn."], "source": "authors"},
        ]
    ),
    "just_eval_lima.json": lambda: json.dumps(
        [{"id": "lima_0", "instruction": "Can brain cells move?", "source_id": "lima-0", "dataset": "lima"}]
    ),
    "question.jsonl": lambda: json.dumps(
        {"question_id": 81, "category": "writing", "turns": ["Write a travel post.", "Now in limericks."]}
    )
    + "\n",
    "train.jsonl": lambda: "".join(
        json.dumps(r) + "\n"
        for r in [
            {"conversations": ["How do I boil an egg?", LONG], "source": "wikihow"},
            {"conversations": ["Hi", "Hello!", "And then?"], "source": "multi_turn"},
        ]
    ),
    "Posts.xml": lambda: '\ufeff<?xml version="1.0" encoding="utf-8"?>\r\n<posts>\r\n'
    + row(Id=1, PostTypeId=1, Score=3, Title="How do eggs boil?", Body="<p>Why?</p>", ClosedDate="2011-01-01")
    + row(Id=2, PostTypeId=2, ParentId=1, Score=25, Body=f"<p>{LONG}</p>", LastEditorUserId=-1)
    + "</posts>",
    "wikihowAll.csv": lambda: wikihow_csv(),
    "RS_2023-01.zst": lambda: ndjson_zst(
        [{"id": "s1", "subreddit": "WritingPrompts", "title": "[WP] Eggs rule the world", "score": 80}]
    ),
    "RC_2023-01.zst": lambda: ndjson_zst(
        [{"id": "c1", "link_id": "t3_s1", "parent_id": "t3_s1", "body": LONG, "score": 40}]
    ),
}


def wikihow_csv() -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["headline", "title", "text"])
    writer.writerow(["h", "How to Boil an Egg", "This article explains it. " + LONG])
    return out.getvalue()


@pytest.mark.django_db
def test_the_readme_examples_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    commands = readme_commands()
    assert len(commands) >= 8
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "manage.py", command
        for word in words[1:]:
            name = word.split(":")[0]
            if name in FILES and not (tmp_path / name).exists():
                content = FILES[name]()
                if isinstance(content, bytes):
                    (tmp_path / name).write_bytes(content)
                else:
                    (tmp_path / name).write_text(content, newline="")
            elif "." in name and "/" not in name and not name.startswith("-") and name.endswith(
                (".json", ".jsonl", ".xml", ".csv", ".zst", ".gz")
            ):
                pytest.fail(f"the README names {name}, which this test cannot write")
        extra = ["--tokenizer", "none"] if words[1] == "curate" else []  # count tokens without a model
        call_command(*words[1:], *extra)
    assert Prompt.objects.filter(prompt_set__name="alpaca-eval").count() == 2
    assert Response.objects.filter(system__name="gpt4-turbo").count() == 2
    assert Prompt.objects.get(prompt_set__name="mt-bench").follow_ups == ["Now in limericks."]
    assert {d.name for d in TrainingDataset.objects.all()} == {"lima", "stem", "wikihow", "stories"}
    assert all(d.trainable().exists() for d in TrainingDataset.objects.all())


def test_every_picture_the_readme_shows_is_in_the_repository():
    text = (ROOT / "README.md").read_text()
    pictures = re.findall(r"(?:\]\(|src=\")(docs/screenshots/[^)\"]+\.png)", text)
    assert len(pictures) >= 8, pictures  # the walk-through: home, comparison and dashboard at two widths, and more
    missing = [p for p in pictures if not (ROOT / p).is_file()]
    assert missing == []
