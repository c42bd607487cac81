"""The embedded default's broker hands every message over whole (evalsite.core.broker).

A writer process sends messages while this process takes them as fast as it can, the way a worker
polls while the site enqueues jobs. kombu's own filesystem transport loses a message whenever the
reader lists the folder between the writer creating the file and writing it; with 50 KB bodies it
lost nearly all of 3,000 here. Ours renames a message into place once it is whole."""

import os
import subprocess
import sys
import time

from kombu import Connection

from tests.conftest import ROOT

TRANSPORT = "evalsite.core.broker:FilesystemTransport"
BODY = "x" * 50_000  # the bigger the body, the wider kombu's window between create and write

WRITER = """
import sys
from kombu import Connection
transport, folder, count, body = sys.argv[1], sys.argv[2], int(sys.argv[3]), "x" * int(sys.argv[4])
queue_folder = folder + "/queue"
options = {"data_folder_in": queue_folder, "data_folder_out": queue_folder, "control_folder": folder + "/control"}
with Connection("filesystem://", transport=transport, transport_options=options) as conn:
    queue = conn.SimpleQueue("stress")
    for i in range(count):
        queue.put({"i": i, "body": body})
"""


def options(folder):
    for name in ("queue", "control"):
        (folder / name).mkdir(exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
    }


def take_while_sent(folder, count: int) -> tuple[list[int], list[str]]:
    """Take messages in a tight loop while a writer process sends `count`; -> indices taken, errors."""
    taken, errors = [], []
    with Connection("filesystem://", transport=TRANSPORT, transport_options=options(folder)) as conn:
        queue = conn.SimpleQueue("stress")
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, TRANSPORT, str(folder), str(count), str(len(BODY))],
            cwd=ROOT,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                message = queue.get(block=False)
            except queue.Empty:
                if writer.poll() is not None and not list((folder / "queue").glob("*.msg")):
                    break
                continue
            except Exception as exc:  # noqa: BLE001  (what kombu's transport raises on a half-written file)
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            assert message.payload["body"] == BODY
            taken.append(message.payload["i"])
            message.ack()
        assert writer.wait(timeout=60) == 0, writer.stderr.read().decode()
    return taken, errors


def test_every_message_sent_while_a_worker_polls_arrives_whole_and_once(tmp_path):
    count = 1500
    taken, errors = take_while_sent(tmp_path, count)
    assert errors == []
    assert sorted(taken) == list(range(count)), f"{count - len(set(taken))} lost, {len(taken) - len(set(taken))} twice"
    queue = tmp_path / "queue"
    assert [p.name for p in queue.iterdir() if p.name != ".claimed"] == [], "no message or part left behind"
    assert list((queue / ".claimed").iterdir()) == []


def test_messages_written_by_kombus_own_transport_are_read(tmp_path):
    """The file names are kombu's: a worker on this transport takes what an older sender wrote."""
    folder_options = options(tmp_path)
    with Connection("filesystem://", transport="filesystem", transport_options=folder_options) as conn:
        conn.SimpleQueue("mixed").put({"from": "kombu"})
    with Connection("filesystem://", transport=TRANSPORT, transport_options=folder_options) as conn:
        queue = conn.SimpleQueue("mixed")
        message = queue.get(timeout=5)
        assert message.payload == {"from": "kombu"}
        message.ack()
        queue.put({"from": "evalsite"})
        assert len(queue) == 1
    with Connection("filesystem://", transport="filesystem", transport_options=folder_options) as conn:
        message = conn.SimpleQueue("mixed").get(timeout=5)
        assert message.payload == {"from": "evalsite"}


def test_the_embedded_settings_pick_this_transport(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["EVALSITE_VAR_DIR"] = str(tmp_path / "var")
    code = "from evalsite.celery import app; print(type(app.connection_for_write().transport).__qualname__)"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["FilesystemTransport"]
