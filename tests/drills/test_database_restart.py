"""Drill: the database stops for 20 seconds (a restart, a failover) while a generation job and a
judge job run. A private PostgreSQL cluster of its own (initdb on a free port, never the shared
server) holds a copy of the test database; both jobs run against it through the path every
worker takes (jobs.execute), the cluster is stopped mid-way and started again 20 s later. Before,
an outage past ~4 s killed the attempt and the job sat "running" until the stale sweep; now the
worker keeps the lease, waits for the database and goes on: every response and every verdict
written once, every request the judge server received on the books, and the time to resume
printed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.conftest import ROOT, free_port
from tests.judge_fixtures import fair_judge, judge_config, judged_study
from tests.openai_stub import OpenAIStub, prompt_text
from tests.test_generation_jobs import api_system, make_set

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


def as_postgres(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """A PostgreSQL tool as the postgres user (initdb and the server refuse to run as root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120, **kwargs)


class Cluster:
    def __init__(self, root: Path, port: int):
        self.data, self.port, self.log = root / "data", port, root / "server.log"

    def init(self) -> None:
        done = as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        assert done.returncode == 0, done.stderr

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg_ctl = str(PG_BIN / "pg_ctl")
        done = as_postgres(pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        assert done.returncode == 0, done.stderr + self.log.read_text()

    def stop(self) -> None:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/drill"

    def query(self, sql: str):
        with psycopg.connect(f"host=127.0.0.1 port={self.port} dbname=drill user=postgres", connect_timeout=3) as c:
            return c.execute(sql).fetchall()


def stub_responder(body: dict) -> str:
    """The judge's prompts get the judge's verdict, generation prompts an answer."""
    return fair_judge(body) if "Answer A:" in prompt_text(body) else "A generated answer. " * 5


@pytest.mark.serial
@pytest.mark.django_db(transaction=True)
def test_a_generation_job_and_a_judge_job_ride_out_a_20_second_database_outage():
    if connection.vendor != "postgresql" or PG_BIN is None or not shutil.which("runuser"):
        pytest.skip("needs PostgreSQL's server binaries and runuser")
    root = Path(tempfile.mkdtemp(prefix="evalsite-pg-drill-"))
    os.chmod(root, 0o777)
    cluster = Cluster(root, free_port())
    cluster.init()
    cluster.start()
    procs: list[subprocess.Popen] = []
    try:
        with OpenAIStub(responder=stub_responder, latency=0.3) as stub:
            make_set(name="drill-set", n=24)
            api_system(stub, concurrency=2)
            study = judged_study(n_prompts=16)
            judge_config(stub, concurrency=2)
            # the test database (rows made above) copied into the private cluster
            settings = connection.settings_dict
            as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(cluster.port), "drill")
            dump = subprocess.run(
                ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "-d", settings["NAME"], "--no-owner"],
                capture_output=True, text=True, timeout=120, check=True,
            )  # fmt: skip
            restore = subprocess.run(
                ["psql", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "-d", "drill", "-q"],
                input=dump.stdout, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert restore.returncode == 0, restore.stderr[-2000:]
            env = {
                **os.environ,
                "DATABASE_URL": cluster.url,
                "DB_CONN_MAX_AGE": "0",
                "JOB_DB_OUTAGE_SECONDS": "90",
                "JOB_HEARTBEAT_SECONDS": "2",
            }
            commands = [
                ["generate", "--system", "api", "--prompts", "drill-set", "--foreground"],
                ["judge", "--study", study.name, "--config", "gpt-4-stub", "--yes", "--foreground"],
            ]
            logs = [root / "generate.log", root / "judge.log"]
            for args, log in zip(commands, logs, strict=True):
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=log.open("w"),
                        stderr=subprocess.STDOUT,
                    )  # fmt: skip
                )

            def progress() -> tuple[int, int]:
                [(generated,)] = cluster.query("SELECT COALESCE(MAX(progress_done), 0) FROM generations_generationjob")
                [(judged,)] = cluster.query("SELECT COALESCE(MAX(progress_done), 0) FROM judging_judgejob")
                return generated, judged

            deadline = time.monotonic() + 60
            while min(progress()) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            before = progress()
            assert min(before) >= 3, f"the jobs did not start: {before}"
            cluster.stop()
            stopped = time.monotonic()
            time.sleep(20)
            cluster.start()
            back = time.monotonic()
            resumed = None
            while resumed is None and time.monotonic() < back + 120:
                try:
                    now = progress()
                except psycopg.OperationalError:
                    now = before
                if now[0] > before[0] and now[1] > before[1]:
                    resumed = time.monotonic() - back
                time.sleep(0.2)
            codes = [p.wait(timeout=180) for p in procs]
            judge_calls = sum(n for key, n in stub.calls.items() if "Answer A:" in key)
        outputs = [log.read_text() for log in logs]
        assert codes == [0, 0], outputs
        [(responses, distinct)] = cluster.query(
            "SELECT COUNT(*), COUNT(DISTINCT prompt_id) FROM catalog_response r JOIN catalog_system s "
            "ON s.id = r.system_id WHERE s.name = 'api'"
        )
        [(verdicts, pairs)] = cluster.query(
            "SELECT COUNT(*), COUNT(DISTINCT (comparison_id, \"order\")) FROM judging_judgeverdict"
        )
        [(status_g,)] = cluster.query("SELECT status FROM generations_generationjob")
        [(status_j, attempts, sent, answered)] = cluster.query(
            "SELECT status, attempts, requests_sent, requests_answered FROM judging_judgejob"
        )
        print(
            f"drill: database down 20 s (stopped after {before[0]} responses and {before[1]} verdicts); "
            f"both jobs went on {resumed:.1f} s after it was back; {responses} responses, {verdicts} verdicts, "
            f"the judge server received {judge_calls} requests, {sent} on the books"
        )
        assert (status_g, status_j, attempts) == ("done", "done", 1), "one attempt each: the lease was kept"
        assert responses == distinct == 24, "every response once"
        assert verdicts == pairs == 32, "every verdict once"
        assert judge_calls <= sent, "no request the judge server received is missing from the books"
        assert resumed is not None and resumed < 30
        assert time.monotonic() - stopped < 200
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
