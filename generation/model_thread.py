"""One thread per loaded model (no torch here: the web process imports this).

torch's CPU kernels run on OpenMP, which keeps a team of worker threads for each thread that has
run parallel work. With two such teams on two cores OpenMP throttles its workers to sleep almost at
once between the many small kernels of a decoding step: a step of the bundled model (int4, the
lean decoder) took 16 ms on a second thread and 10 ms where one thread did everything (measured
here). So whatever keeps a model loaded runs it on one thread: ``made_apart`` loads it in a thread
that ends (its team goes with it) before another thread takes over; ``ModelThread`` is the one
thread a local model's every call goes to, whichever thread asks (the live worker's pool)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


def made_apart(make: Callable[[], Any]) -> Any:
    """``make()`` run in a thread of its own that ends before this returns: the OpenMP team a
    model's loading starts goes with it, so the decoding loop's is the process's only one."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = make()
        except BaseException as exc:  # noqa: BLE001  (raised again in the caller's thread)
            box["error"] = exc

    thread = threading.Thread(target=run, name="load-model")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class ModelThread:
    """One long-lived thread that runs every call into one local model, where the threads that
    want it would otherwise take turns at it (the live worker's pool: see the module's notes on
    OpenMP teams). ``run`` waits for a call's result; ``stream`` also hands each text the call
    passes to its ``emit`` to the caller's ``on_text``, in the caller's own thread (which may write
    it to its database)."""

    def __init__(self, name: str = "model") -> None:
        self.calls: queue.Queue[tuple[Callable[[], Any], queue.Queue]] = queue.Queue()
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while True:
            work, replies = self.calls.get()
            try:
                replies.put(("result", work()))
            except BaseException as exc:  # noqa: BLE001  (raised again in the caller's thread)
                replies.put(("error", exc))

    def run(self, work: Callable[[], Any]) -> Any:
        return self.stream(lambda _emit: work(), lambda _text: None)

    def stream(self, work: Callable[[Callable[[str], None]], Any], on_text: Callable[[str], None]) -> Any:
        replies: queue.Queue = queue.Queue()
        self.calls.put((lambda: work(lambda text: replies.put(("text", text))), replies))
        while True:
            kind, value = replies.get()
            if kind == "text":
                on_text(value)
            elif kind == "error":
                raise value
            else:
                return value
