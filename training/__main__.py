"""``python -m training train --run-dir DIR``: train a prepared run folder (data.jsonl, recipe.json,
base.json), the entry point for ``accelerate launch`` on several GPUs or hosts:

    accelerate launch --config_file training/accelerate/fsdp.yaml -m training train --run-dir DIR

Every process trains its share; the main one appends progress events to DIR/progress.jsonl,
which the evalsite job relays (settings.TRAINING_LAUNCHER)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from training.loop import Callbacks, make_accelerator, train
from training.recipe import Recipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("train", help="train a prepared run folder, resuming after its last epoch")
    run.add_argument("--run-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    run_dir: Path = args.run_dir
    recipe = Recipe.load(run_dir)
    base = json.loads((run_dir / "base.json").read_text())
    accelerator = make_accelerator(recipe)
    events = (run_dir / "progress.jsonl").open("a") if accelerator.is_main_process else None

    def emit(event: str, **fields) -> None:
        if events is not None:
            events.write(json.dumps({"event": event, **fields}, default=str) + "\n")
            events.flush()

    callbacks = Callbacks(
        on_step=lambda report: emit("step", **asdict(report)),
        on_checkpoint=lambda report: emit("checkpoint", **asdict(report)),
        on_status=lambda message: emit("status", message=message),
        on_heldout=lambda report: emit("heldout", **asdict(report)),
    )
    outcome = train(run_dir, base, recipe, callbacks, accelerator=accelerator)
    emit("finished", skipped=outcome.skipped_examples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
