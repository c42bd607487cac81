import json

import pytest
from django.core.management import call_command

from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.catalog.seed import SHIPPED_SETS
from generation.bundled import BUNDLED_SYSTEM_NAME, bundled_model_dir

pytestmark = pytest.mark.django_db


def test_seed_loads_the_shipped_sets_and_is_idempotent():
    call_command("seed")
    call_command("seed")
    counts = {s.name: s.prompts.count() for s in PromptSet.objects.all()}
    assert counts["lima-style-test"] >= 60
    assert counts["lima-style-dev"] >= 20
    assert counts["lima-style-train"] >= 60
    assert set(counts) == {s.name for s in SHIPPED_SETS}


def test_the_shipped_test_set_has_the_papers_mix():
    call_command("seed")
    test = list(Prompt.objects.filter(prompt_set__name="lima-style-test"))
    share = {tag: sum(tag in p.tags for p in test) / len(test) for tag in ("ood", "safety")}
    assert 0.07 <= share["ood"] <= 0.15 and 0.07 <= share["safety"] <= 0.15
    assert sum(p.is_multi_turn for p in test) >= 3
    train = list(Prompt.objects.filter(prompt_set__name="lima-style-train"))
    assert all(p.reference_answer for p in train)
    assert sum("safety" in p.tags for p in train) >= 3
    assert sum(p.is_multi_turn for p in train) >= 2


def test_seed_registers_the_bundled_model_when_installed():
    call_command("seed")
    system = System.objects.filter(name=BUNDLED_SYSTEM_NAME).first()
    if bundled_model_dir() is None:
        assert system is None
    else:
        assert system.backend == "hf_local"
        assert system.backend_config["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
        assert system.sampling_config.top_p == 0.9 and system.sampling_config.temperature == 0.7


def test_export_writes_every_table_as_jsonl(tmp_path):
    test = PromptSet.objects.create(name="t")
    prompt = Prompt.objects.create(
        prompt_set=test, external_id="a", messages=[{"role": "user", "content": "Hi?"}], tags=["ood"]
    )
    system = System.objects.create(name="base", backend="imported")
    Response.objects.create(system=system, prompt=prompt, text="Hello.", completion_tokens=2)
    call_command("export", out=tmp_path)
    prompts = [json.loads(line) for line in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    assert prompts == [
        {"set": "t", "id": "a", "messages": [{"role": "user", "content": "Hi?"}], "source": "", "tags": ["ood"]}
    ]
    systems = [json.loads(line) for line in (tmp_path / "systems.jsonl").read_text().splitlines()]
    assert systems[0]["sampling"]["repetition_penalty"] == 1.2
    responses = [json.loads(line) for line in (tmp_path / "responses.jsonl").read_text().splitlines()]
    assert responses[0]["response"] == "Hello." and responses[0]["id"] == "a" and responses[0]["system"] == "base"
    assert not list(tmp_path.glob("*.partial"))


def test_exported_prompts_import_back_unchanged(tmp_path):
    call_command("seed")
    call_command("export", out=tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    dev = [{k: v for k, v in r.items() if k != "set"} for r in rows if r["set"] == "lima-style-dev"]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dev))
    call_command("import_prompts", tmp_path / "dev.jsonl", set_name="dev-copy")
    original = {p.external_id: p.messages for p in Prompt.objects.filter(prompt_set__name="lima-style-dev")}
    copy = {p.external_id: p.messages for p in Prompt.objects.filter(prompt_set__name="dev-copy")}
    assert original == copy
