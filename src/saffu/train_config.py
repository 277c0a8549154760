"""The options of backpropagation (:func:`saffu.torch.training.train`), each defined once.

:class:`TrainConfig` holds every option of a training run with its default, help text and
check. The trainer reads it, ``saffu train`` / ``saffu finetune`` generate their options from it,
and a sweep grid's ``[backprop]`` table is checked against it, so a new option is one field here.
It imports no PyTorch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from saffu.errors import InvalidParameterError
from saffu.validation import check_choice, check_int, check_real

__all__ = ["BUDGETS", "CLOCKS", "TrainConfig"]

CLOCKS = ("wall", "cpu")
BUDGETS = ("epochs", "max_seconds", "max_tokens")


def _option(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """Every option of a backpropagation run; validated on construction (see ``help(name)``)."""

    lr: float = _option(0.1, "peak learning rate (linear warmup, then cosine decay to 0.1·lr)")
    weight_decay: float = _option(0.0, "AdamW decoupled weight decay of W, U and O")
    batch_targets: int = _option(1024, "targets per mini-batch")
    epochs: float | None = _option(1.0, "passes over the corpus (none: no epoch budget)")
    max_seconds: float | None = _option(None, "training seconds on the clock, evaluations excluded")
    max_tokens: int | None = _option(None, "targets to train on")
    warmup_steps: int = _option(100, "linear warmup steps")
    max_grad_norm: float | None = _option(1.0, "gradient-norm clipping (none: off)")
    eval_every: int = _option(200, "steps between dev evaluations")
    eval_growth: float = _option(1.0, "each evaluation gap is this many times the last (≥ 1)")
    patience: int | None = _option(None, "stop after this many evaluations without a better dev "
                                         "perplexity (none: never)")
    seed: int = _option(0, "batch order, PyTorch and the random init")
    thaw_after: int | None = _option(None, "train the cipher vectors too from this step on, at "
                                           "thaw_lr_scale·lr (none: never)")
    thaw_lr_scale: float = _option(0.1, "learning-rate multiplier of the thawed cipher")
    clock: str = _option("wall", "what budget seconds count: wall (wall-clock) or cpu (CPU "
                                 "seconds of the process)")

    def __post_init__(self) -> None:
        check_real("lr", self.lr, 0, exclusive_minimum=True)
        check_real("weight_decay", self.weight_decay, 0)
        check_int("batch_targets", self.batch_targets, 1)
        for name in ("epochs", "max_seconds"):
            check_real(name, getattr(self, name), 0, exclusive_minimum=True, optional=True)
        check_int("max_tokens", self.max_tokens, 1, optional=True)
        if all(getattr(self, name) is None for name in BUDGETS):
            raise InvalidParameterError("give at least one budget: epochs, max_seconds or max_tokens")
        check_int("warmup_steps", self.warmup_steps, 0)
        check_real("max_grad_norm", self.max_grad_norm, 0, exclusive_minimum=True, optional=True)
        check_int("eval_every", self.eval_every, 1)
        check_real("eval_growth", self.eval_growth, 1)
        check_int("patience", self.patience, 1, optional=True)
        check_int("seed", self.seed, 0)
        check_int("thaw_after", self.thaw_after, 0, optional=True)
        check_real("thaw_lr_scale", self.thaw_lr_scale, 0, exclusive_minimum=True)
        check_choice("clock", self.clock, CLOCKS)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def help(cls, name: str) -> str:
        return {f.name: f for f in dataclasses.fields(cls)}[name].metadata["help"]

    def replace(self, **changes: Any) -> TrainConfig:
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise InvalidParameterError(f"unknown training option(s) {', '.join(unknown)}; options "
                                        f"are {', '.join(self.field_names())}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
