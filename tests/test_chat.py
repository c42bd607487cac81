"""A staff member holds a live conversation with a system (an OpenAI-compatible server here),
grades each answer before the next message, and Figure 7 counts the graded turns per system. The
answers are written by a real worker of the live queue, never by the web process."""

from __future__ import annotations

import time

import pytest
from bs4 import BeautifulSoup
from django.contrib.auth.models import User

from evalsite.answering.models import ChatTurn, Conversation
from evalsite.catalog.models import System
from generation import quantized
from tests.openai_stub import OpenAIStub, Reply

pytestmark = pytest.mark.django_db


def api_system(stub, name):
    config = {"base_url": stub.url, "model": "m", "timeout": 5, "max_retries": 0}
    return System.objects.create(name=name, backend="openai_compat", backend_config=config)


def page(client, url):
    return BeautifulSoup(client.get(url).content, "html.parser")


def error_of(reply) -> str:
    return BeautifulSoup(reply.content, "html.parser").select_one(".message.error").get_text(" ", strip=True)


def answered(client, url: str, index: int, seen: list | None = None, seconds: float = 30) -> dict:
    """The turn once its answer is written (or failed), read as the chat page reads it; ``seen``
    collects every (state, text) it passed through."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        turn = client.get(f"{url}turn/{index}.json").json()
        if seen is not None and (turn["state"], turn["text"]) not in seen:
            seen.append((turn["state"], turn["text"]))
        if turn["state"] in ("done", "failed"):
            return turn
        time.sleep(0.02)
    raise AssertionError(f"turn {index} still {turn['state']} after {seconds} s")


@pytest.mark.django_db(transaction=True)
def test_a_conversation_sends_the_whole_history_and_each_turn_is_graded(staff_client, live_worker):
    with OpenAIStub(responder=lambda body: f"reply {len(body['messages'])}") as stub:
        api_system(stub, "lima-zero")
        reply = staff_client.post("/generation/chat/", {"system": "lima-zero"})
        conversation = Conversation.objects.get()
        assert reply["Location"] == f"/generation/chat/{conversation.pk}/"
        url = reply["Location"]
        staff_client.post(url, {"message": "Hello there"})
        assert answered(staff_client, url, 1)["state"] == "done"
        # the next message waits for the answer's grade
        refused = staff_client.post(url, {"message": "And then?"}, follow=True)
        assert "grade answer 1 first" in error_of(refused)
        assert page(staff_client, url).select_one("#say textarea").has_attr("disabled")
        staff_client.post(url, {"index": "1", "grade": "pass"})
        staff_client.post(url, {"message": "And then?"})
        answered(staff_client, url, 2)
        staff_client.post(url, {"index": "2", "grade": "excellent"})
        last = stub.bodies[-1]["messages"]
    assert [m["content"] for m in last] == ["Hello there", "reply 1", "And then?"]
    turns = list(ChatTurn.objects.order_by("index").values_list("index", "assistant_text", "grade"))
    assert turns == [(1, "reply 1", "pass"), (2, "reply 3", "excellent")]
    shown = page(staff_client, url)
    assert [t.get_text(strip=True) for t in shown.select(".grade")] == ["Graded: Pass", "Graded: Excellent"]


def test_figure_7_per_system_with_the_papers_bars_and_per_turn_shares(staff_client):
    with OpenAIStub() as stub:
        zero, dialogue = api_system(stub, "zero-shot"), api_system(stub, "with-dialogue")
    grades = {zero: [["fail", "pass"], ["excellent", "fail", "fail"]], dialogue: [["excellent", "excellent"], ["pass"]]}
    user = User.objects.get(username="boss")
    for system, conversations in grades.items():
        for values in conversations:
            conversation = Conversation.objects.create(system=system, staff=user)
            for n, value in enumerate(values, start=1):
                ChatTurn.objects.create(
                    conversation=conversation, index=n, user_text="q", assistant_text="a", grade=value
                )
    shown = page(staff_client, "/generation/chat/")
    labels = [t.get_text() for t in shown.select("#figure-7 svg text")]
    assert "zero-shot" in labels and "with-dialogue" in labels and "45.2/19.1/35.7" in labels
    # a handful of graded turns: each bar says it rests on too few to read
    caption = " ".join(t.get_text() for t in shown.select("#figure-7 svg g.notes text"))
    assert "Too few votes for zero-shot so far (5 graded turns)" in caption
    assert "Too few votes for with-dialogue so far (3 graded turns)" in caption
    rows = [[td.get_text(strip=True) for td in tr.find_all("td")] for tr in shown.select("#per-turn tr")[1:]]
    # zero-shot turn 1: fail, excellent -> 50% excellent, 0% pass, 50% fail; turn 3: one fail
    assert ["zero-shot", "1", "2", "50%", "0%", "50%"] in rows and ["zero-shot", "3", "1", "0%", "0%", "100%"] in rows
    assert ["with-dialogue", "1", "2", "50%", "50%", "0%"] in rows


@pytest.mark.django_db(transaction=True)
def test_what_cannot_be_said_or_graded_is_refused(staff_client, live_worker):
    with OpenAIStub() as stub:
        stub.script("boom", Reply(status=500))
        api_system(stub, "api")
        System.objects.create(name="imported-one", backend="imported")
        refused = staff_client.post("/generation/chat/", {"system": "imported-one"}, follow=True)
        assert "only has imported responses" in error_of(refused) and not Conversation.objects.exists()
        url = staff_client.post("/generation/chat/", {"system": "api"})["Location"]
        assert "the message is empty" in error_of(staff_client.post(url, {"message": "  "}, follow=True))
        assert not ChatTurn.objects.exists()
        staff_client.post(url, {"message": "boom"})
        failed = answered(staff_client, url, 1)
        assert failed["state"] == "failed" and failed["error"].startswith("api did not answer: ")
        shown = page(staff_client, url)
        assert shown.select_one("#turn-1 .answer-error").get_text(strip=True) == failed["error"]
        assert not shown.select_one("#say textarea").has_attr("disabled"), "a failed answer: the person may send again"
        assert "turn 1 has no answer to grade" in error_of(
            staff_client.post(url, {"index": "1", "grade": "pass"}, follow=True)
        )
        staff_client.post(url, {"message": "fine"})
        assert answered(staff_client, url, 2)["text"] == "Answer to: fine"
        assert [m["content"] for m in stub.bodies[-1]["messages"]] == ["fine"], "a failed turn is not history"
        assert "grade must be one of fail, pass, excellent" in error_of(
            staff_client.post(url, {"index": "2", "grade": "great"}, follow=True)
        )
        assert "has no turn 7" in error_of(staff_client.post(url, {"index": "7", "grade": "pass"}, follow=True))
    assert staff_client.get("/generation/chat/999/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_sends_while_an_answer_is_being_written_are_refused_not_generated_and_thrown_away():
    """Eight sends of the first message at once (a double click, several tabs): one is generated
    and kept; the others are told an answer is being written. Before, each ran a whole
    generation in its web thread and all but one were thrown away."""
    import threading

    from django.db import connection

    from evalsite.answering import chat

    with OpenAIStub(responder=lambda body: "an answer", latency=0.8) as stub:
        system = api_system(stub, "slow")
        boss = User.objects.create_superuser("boss", "boss@example.org", "pw-boss-123")
        conversation = chat.start(system, boss)
        outcomes: list[str] = []

        def send() -> None:
            try:
                chat.say(Conversation.objects.get(pk=conversation.pk), "Hello?")
                outcomes.append("answered")
            except chat.ChatError as exc:
                outcomes.append(str(exc))
            finally:
                connection.close()

        threads = [threading.Thread(target=send) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        calls = sum(stub.calls.values())
    assert outcomes.count("answered") == 1 and calls == 1, (outcomes, calls)
    refused = [o for o in outcomes if o != "answered"]
    assert len(refused) == 7 and any(o.startswith("an answer is being written") for o in refused)
    assert ChatTurn.objects.count() == 1 and Conversation.objects.get().answering_since is None


@pytest.mark.django_db(transaction=True)
def test_the_answer_is_shown_as_it_is_written_and_send_waits_for_it(staff_client, live_worker):
    """The page reads the turn while the system writes it: the text grows (a prefix of the answer
    each time), Send stays disabled, then the whole answer with its grade buttons."""
    words = "Paris is the capital of France and has been for a very long time".split()
    with OpenAIStub(responder=lambda body: " ".join(words), stream_delay=0.08) as stub:
        api_system(stub, "streamer")
        url = staff_client.post("/generation/chat/", {"system": "streamer"})["Location"]
        staff_client.post(url, {"message": "Capital of France?"})
        while_writing = page(staff_client, url)
        seen: list[tuple[str, str]] = []
        turn = answered(staff_client, url, 1, seen)
    assert while_writing.select_one("#send").has_attr("disabled") and while_writing.select_one("#id_message").has_attr(
        "disabled"
    )
    assert while_writing.select_one("#writing")["data-src"] == f"{url}turn/1.json"
    assert turn == {"state": "done", "label": "answered", "text": " ".join(words), "error": ""}
    partial = [text for state, text in seen if state == "writing" and text]
    assert len(partial) >= 3, f"the answer grew in front of the reader: {seen}"
    assert all(" ".join(words).startswith(text) for text in partial) and partial[0] != partial[-1]
    done = page(staff_client, url)
    assert done.select_one("#writing") is None and done.select_one("#turn-1 #grade-form") is not None


def test_a_turn_whose_model_is_loading_says_so_and_sending_waits(staff_client):
    with OpenAIStub() as stub:
        system = api_system(stub, "big-model")
    conversation = Conversation.objects.create(system=system, staff=User.objects.get(username="boss"))
    ChatTurn.objects.create(conversation=conversation, index=1, user_text="Hello?", state=ChatTurn.State.LOADING)
    shown = page(staff_client, f"/generation/chat/{conversation.pk}/")
    assert shown.select_one("#answer-state").get_text(strip=True) == (
        "loading the model: the first answer after the worker starts waits for it…"
    )
    assert shown.select_one("#send").has_attr("disabled")
    assert shown.select_one("#id_message")["placeholder"] == "Wait for the answer above"


@pytest.mark.django_db(transaction=True)
def test_the_web_process_writes_no_answer_a_live_worker_does_when_it_comes(staff_client, workers):
    """With no worker of the live queue the turn waits, saying so (the web process never loads a
    model or generates); a worker started later takes the message and writes the answer."""
    import threading

    with OpenAIStub(responder=lambda body: "written by the worker") as stub:
        api_system(stub, "api")
        url = staff_client.post("/generation/chat/", {"system": "api"})["Location"]
        staff_client.post(url, {"message": "Hello?"})
        time.sleep(1.0)
        assert ChatTurn.objects.get().state == ChatTurn.State.QUEUED and sum(stub.calls.values()) == 0
        assert not [t for t in threading.enumerate() if t.name.startswith("chat-")]
        shown = page(staff_client, url)
        assert shown.select_one("#answer-state").get_text(strip=True) == "waiting for a worker of the live queue…"
        assert shown.select_one("#send").has_attr("disabled")
        worker = workers("live", queues="live", pool="threads", concurrency=2)
        turn = answered(staff_client, url, 1)
    assert turn["state"] == "done" and turn["text"] == "written by the worker"
    assert "live.chat_answer" in worker.output()


@pytest.mark.django_db(transaction=True)
def test_a_live_worker_preloads_its_systems_so_the_first_answer_does_not_wait_for_a_model(
    staff_client, workers, tmp_path
):
    """CHAT_PRELOAD_SYSTEMS: the worker loads the model as it starts; the first answer goes
    straight to writing. A system it did not preload is loaded at its first answer, saying so."""
    from tests.tiny_models import save_tiny

    folder = save_tiny(tmp_path / "tiny")
    for name in ("warm", "cold"):
        System.objects.create(
            name=name,
            backend="hf_local",
            backend_config={"model_path": str(folder)},
            sampling={"max_new_tokens": 8, "temperature": 0},
        )
    worker = workers(
        "live", queues="live", pool="threads", concurrency=2, env_overrides={"CHAT_PRELOAD_SYSTEMS": "warm, nope"}
    )
    deadline = time.monotonic() + 60
    while "chat preload: warm is loaded" not in worker.output():
        assert time.monotonic() < deadline, worker.output()[-3000:]
        time.sleep(0.1)
    assert "no system named 'nope' that can answer" in worker.output()
    states = {}
    for name in ("warm", "cold"):
        url = staff_client.post("/generation/chat/", {"system": name})["Location"]
        staff_client.post(url, {"message": "hello there"})
        seen: list[tuple[str, str]] = []
        assert answered(staff_client, url, 1, seen, seconds=60)["state"] == "done"
        states[name] = {state for state, _ in seen}
    assert "loading" not in states["warm"], states
    loads = [line.split("chat turn ")[1] for line in worker.output().splitlines() if "first" in line]
    assert [load.split(": ")[1] for load in loads] == ["loading cold first"], loads


@pytest.mark.django_db(transaction=True)
def test_a_local_models_answers_from_the_worker_pools_threads_all_run_on_one_model_thread(tmp_path):
    """A live worker's pool threads take turns writing answers; a local model is loaded and run by
    one thread of the process all the same (torch's OpenMP keeps a team per thread that runs its
    kernels, and two teams on two cores slow every step: generation/continuous.py), while the
    answer's text is still saved as it grows, by the pool thread."""
    import threading

    from django.db import connections

    from evalsite.answering import chat
    from tests.tiny_models import save_tiny

    folder = save_tiny(tmp_path / "tiny")
    system = System.objects.create(
        name="local", backend="hf_local", backend_config={"model_path": str(folder)}, sampling={"max_new_tokens": 8}
    )
    staff = User.objects.create_user("chief", is_staff=True)
    ran_on: set[str] = set()
    done: list[ChatTurn] = []

    def answer(k: int) -> None:
        try:
            conversation = chat.start(system, staff)
            done.append(chat.say(conversation, f"hello there {k}"))
        finally:
            connections.close_all()  # the thread's own connection, as the live worker's task does

    first = threading.Thread(target=answer, args=(0,), name="pool-1")
    first.start()
    first.join()
    backend, _, _ = chat._backend(system)
    backend.loaded.model.model.embed_tokens.register_forward_hook(
        lambda *_: ran_on.add(threading.current_thread().name)
    )
    for k, name in ((1, "pool-2"), (2, "pool-3")):
        thread = threading.Thread(target=answer, args=(k,), name=name)
        thread.start()
        thread.join()
    assert ran_on == {f"model-{system.pk}"}, ran_on
    assert [turn.state for turn in done] == ["done"] * 3 and all(turn.assistant_text for turn in done)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not quantized.int4_supported(), reason="this torch has no CPU int4 matmul")
def test_a_local_model_that_answers_alone_on_its_int4_form_loads_that_form_with_the_model(tmp_path, monkeypatch):
    """hf_local's one_row_weights (the bundled model's setting on a CPU without bfloat16
    arithmetic): the chat writes one answer at a time, so the int4 form is made when the model is
    loaded, not in the first answer, and the answers run on it, on the model's thread."""
    import threading

    from evalsite.answering import chat
    from tests.tiny_models import save_tiny

    monkeypatch.setenv("EVALSITE_QUANTIZED_CACHE", str(tmp_path / "quantized"))
    folder = save_tiny(tmp_path / "tiny", hidden=64)
    system = System.objects.create(
        name="local-int4",
        backend="hf_local",
        backend_config={"model_path": str(folder), "device": "cpu", "one_row_weights": "int4"},
        sampling={"max_new_tokens": 8},
    )
    staff = User.objects.create_user("chief", is_staff=True)
    backend, _, _ = chat._backend(system)
    decoder = backend.loaded.int4_decoder
    assert decoder is not None, "made with the model"
    ran_on: list[str] = []
    decoder.embed.register_forward_hook(lambda *_: ran_on.append(threading.current_thread().name))
    turn = chat.say(chat.start(system, staff), "hello there")
    assert turn.state == "done" and turn.assistant_text
    assert ran_on and set(ran_on) == {f"model-{system.pk}"}, ran_on
