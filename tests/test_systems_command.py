import pytest
from django.core.management import CommandError, call_command

from evalsite.catalog.models import System
from tests.openai_stub import OpenAIStub
from tests.tiny_models import save_tiny

pytestmark = pytest.mark.django_db


def test_add_list_and_show_a_local_and_an_api_system(tmp_path, capsys):
    folder = save_tiny(tmp_path / "tiny")
    sampling = '{"max_new_tokens": 512}'
    call_command(
        "systems",
        "add",
        "lima-7b",
        "--backend",
        "hf_local",
        "--kind",
        "candidate",
        "--model-path",
        str(folder),
        "--sampling",
        sampling,
    )
    with OpenAIStub() as stub:
        call_command(
            "systems",
            "add",
            "gpt-4",
            "--backend",
            "openai_compat",
            "--base-url",
            stub.url,
            "--model",
            "gpt-4",
            "--api-key-env",
            "HOME",
            "--concurrency",
            "4",
        )
    call_command("systems", "add", "claude", "--backend", "imported")
    lima = System.objects.get(name="lima-7b")
    assert lima.kind == "candidate" and lima.sampling_config.max_new_tokens == 512 and lima.sampling_config.top_p == 0.9
    assert System.objects.get(name="gpt-4").backend_config["concurrency"] == 4
    capsys.readouterr()
    call_command("systems", "list")
    listing = capsys.readouterr().out
    assert listing.index("lima-7b") < listing.index("claude"), "candidates first"
    call_command("systems", "show", "gpt-4")
    shown = capsys.readouterr().out
    assert '"api_key_env": "HOME"' in shown and '"repetition_penalty": 1.2' in shown


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "hf_local", "--model-path", "/nowhere"], "model_path /nowhere does not exist"),
        (["--backend", "openai_compat", "--model", "m"], "base_url is required"),
        (["--backend", "openai_compat", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], "nothing answers"),
        (["--backend", "imported", "--sampling", '{"top_p": 7}'], "sampling: sampling.top_p must be in"),
        (["--backend", "imported", "--sampling", "{oops"], "--sampling is not valid JSON"),
    ],
)
def test_a_bad_system_is_refused_with_what_to_fix(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("systems", "add", "x", *args)
    assert not System.objects.exists()


def test_a_taken_name_is_refused():
    System.objects.create(name="x", backend="imported")
    with pytest.raises(CommandError, match="a system named 'x' exists"):
        call_command("systems", "add", "x", "--backend", "imported")
