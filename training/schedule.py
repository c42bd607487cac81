"""The paper's learning-rate schedule: no warmup, then linear from lr at the first step to
final_lr at the last (an optional warmup ramps up first)."""

from __future__ import annotations

from collections.abc import Callable


def lima_lr_factor(total_steps: int, lr: float, final_lr: float, warmup_steps: int = 0) -> Callable[[int], float]:
    """A LambdaLR factor: lr * factor(step) is the learning rate of optimiser step ``step``
    (0-based), equal to lr at step 0 (after warmup) and to final_lr at step total_steps - 1."""
    floor = final_lr / lr
    decay_steps = max(total_steps - warmup_steps - 1, 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        done = min(step - warmup_steps, decay_steps) / decay_steps
        return 1.0 - (1.0 - floor) * done

    return factor
