"""A redis-server of the bench's own, on a free port, without persistence, stopped when the bench
ends: benches that flush or fill Redis never touch the machine's shared server (its databases
belong to the test suite and to whoever else runs there)."""

from __future__ import annotations

import atexit
import socket
import subprocess
import time


def start() -> str:
    """Start one; returns its base URL (redis://127.0.0.1:PORT), databases 0-15 empty."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    atexit.register(lambda: (server.terminate(), server.wait(10)))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return f"redis://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start on port {port}")
