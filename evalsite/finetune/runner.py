"""The work of a training run: the LIMA loop in this worker, or the processes a launcher starts
(accelerate, torchrun) whose progress this job relays; either way each step and checkpoint lands
on the run's row."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

from django.conf import settings

from evalsite.core.jobs import JobContext
from evalsite.finetune.models import Checkpoint, TrainingRun
from training.loop import Callbacks, CheckpointReport, HeldoutReport, StepReport, train, write_examples


def run_training(run: TrainingRun, ctx: JobContext) -> None:
    recipe = run.recipe_obj
    examples = [{"id": e.external_id, "source": e.source, "messages": e.messages} for e in run.dataset.trainable()]
    if not examples:
        raise ValueError(f"dataset {run.dataset} has no example left to train on")
    # frozen on the first attempt: a resumed run trains on exactly the same examples
    write_examples(run.run_dir, examples)
    (run.run_dir / "base.json").write_text(json.dumps(run.base.backend_config) + "\n")
    recipe.save(run.run_dir)
    TrainingRun.objects.filter(pk=run.pk).update(examples_used=len(examples))
    progress = RunProgress(run, ctx)
    if settings.TRAINING_LAUNCHER:
        run_launched(run, progress)
    else:
        outcome = train(
            run.run_dir,
            run.base.backend_config,
            recipe,
            Callbacks(
                on_step=progress.step,
                on_checkpoint=progress.checkpoint,
                on_status=progress.status,
                on_heldout=progress.heldout,
            ),
        )
        progress.finished(outcome.skipped_examples)


def run_launched(run: TrainingRun, progress: RunProgress) -> None:
    """`<launcher> -m training train --run-dir DIR`: the training processes (on any number of
    GPUs and hosts) write progress.jsonl; this job relays it and ends when they do."""
    events = run.run_dir / "progress.jsonl"
    command = [*shlex.split(settings.TRAINING_LAUNCHER), "-m", "training", "train", "--run-dir", str(run.run_dir)]
    log = (run.run_dir / "launcher.log").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR)
    position = 0
    try:
        while True:
            exited = process.poll() is not None
            position = progress.relay(events, position)
            if exited:
                break
            time.sleep(1.0)
    except BaseException:
        process.terminate()
        process.wait(30)
        raise
    finally:
        log.close()
    if process.returncode:
        tail = (run.run_dir / "launcher.log").read_text(errors="replace")[-600:]
        raise RuntimeError(f"the launcher exited with {process.returncode}: {tail}")


class RunProgress:
    """Turns the training loop's reports into job progress, loss history and Checkpoint rows."""

    def __init__(self, run: TrainingRun, ctx: JobContext):
        self.run = run
        self.ctx = ctx
        self.history = list(run.loss_history)
        self.heldout_history = list(run.heldout_history)
        self.tokens = 0

    def step(self, report) -> None:
        # a resumed run replays steps after its last checkpoint: drop what they replace
        self.history = [h for h in self.history if h[0] < report.step] + [
            [report.step, report.epoch, round(report.loss, 5), report.lr]
        ]
        self.tokens = report.tokens
        TrainingRun.objects.filter(pk=self.run.pk).update(
            loss_history=self.history, epoch=report.epoch, tokens_seen=report.tokens
        )
        self.ctx.progress(
            report.step,
            report.total_steps,
            units=report.tokens,
            unit="tokens/s",
            detail=f"epoch {report.epoch}, loss {report.loss:.3f}",
        )

    def checkpoint(self, report) -> None:
        Checkpoint.objects.update_or_create(
            run=self.run,
            epoch=report.epoch,
            defaults={"step": report.step, "path": str(report.path), "train_loss": report.train_loss},
        )

    def heldout(self, report: HeldoutReport) -> None:
        # one value per epoch; a resumed run reports the saved ones again
        self.heldout_history = [h for h in self.heldout_history if h[0] < report.epoch] + [
            [report.epoch, round(report.loss, 5), report.examples]
        ]
        TrainingRun.objects.filter(pk=self.run.pk).update(heldout_history=self.heldout_history)

    def status(self, message: str) -> None:
        self.ctx.progress(self.ctx.job.progress_done, units=self.tokens, detail=message)

    def finished(self, skipped: list[str]) -> None:
        last = Checkpoint.objects.filter(run=self.run).order_by("-epoch").first()
        detail = f"{self.run.checkpoints.count()} checkpoint(s)"
        if last is not None and last.train_loss is not None:
            detail += f"; epoch {last.epoch} train loss {last.train_loss:.3f}"
        TrainingRun.objects.filter(pk=self.run.pk).update(skipped=skipped, status_detail=detail)

    def relay(self, events: Path, position: int) -> int:
        """Apply the progress events a launched run appended since ``position``."""
        if not events.exists():
            self.ctx.progress(
                self.ctx.job.progress_done, units=self.tokens, detail="waiting for the launched processes"
            )
            return position
        with events.open() as handle:
            handle.seek(position)
            for line in handle:
                if not line.endswith("\n"):
                    break  # half-written; read it next time
                position += len(line.encode())
                event = json.loads(line)
                kind = event.pop("event")
                if kind == "step":
                    self.step(StepReport(**event))
                elif kind == "checkpoint":
                    self.checkpoint(CheckpointReport(**{**event, "path": Path(event["path"])}))
                elif kind == "heldout":
                    self.heldout(HeldoutReport(**event))
                elif kind == "status":
                    self.status(event["message"])
                elif kind == "finished":
                    self.finished(event["skipped"])
        return position
