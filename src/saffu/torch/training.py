"""Backpropagation for SAFFU modules (METHOD.md §5): AdamW on cross-entropy, dev early stopping.

:func:`train` streams mini-batches of contexts from a :class:`~saffu.corpus.TokenizedCorpus`
(consecutive targets, ranges shuffled with a seeded generator), follows a linear-warmup + cosine
learning-rate schedule, evaluates dev perplexity every few steps, keeps the best weights, and
stops at the first exhausted budget (epochs, tokens, seconds) or when dev perplexity stops
improving. The commands ``saffu finetune`` and ``saffu train`` (:mod:`saffu.cli.train`) import
this module only when they run, so the rest of the command line works without PyTorch.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from saffu._backend import get_num_threads
from saffu.corpus import TokenizedCorpus
from saffu.errors import InvalidParameterError
from saffu.torch.module import ContextBatch, SaffuModule, corpus_batches, from_torch
from saffu.train_config import CLOCKS as CLOCK_NAMES
from saffu.train_config import TrainConfig
from saffu.validation import is_real

__all__ = ["CLOCKS", "PARAMETER_GROUPS", "WARM_LR_SCALES", "Budget", "History", "Stopwatch",
           "evaluate", "lr_factor", "torch_runtime", "train"]

EVAL_BATCH_TARGETS = 4096  # targets per evaluation batch (bounds memory at 4096 × V floats)
LR_FLOOR = 0.1  # the cosine schedule ends at this fraction of the peak learning rate
STOP_REASONS = ("epochs", "max_tokens", "max_seconds", "patience")
PARAMETER_GROUPS = ("attention", "hidden", "output", "skip", "bias", "cipher")
"""The parameter groups of a :class:`~saffu.torch.SaffuModule` (W, U, O, the skip weights, o,
cipher vectors)."""
WARM_LR_SCALES = {"output": 0.03, "skip": 0.03, "bias": 0.03}
"""Learning-rate multipliers of a warm start (unnamed groups: 1). The explicit O, skip weights
and o are log-probabilities whose rare-token rows get tiny, one-signed gradients; Adam scales
each coordinate to a step of about ``lr``, so at ``lr`` = 0.1 the first steps lower every rare
token's log-probability by about a nat and dev perplexity rises: they train at 0.03·lr
(bench/warm_start.py; bench/RESULTS.md "Why warm runs first got worse"; W and U at 3·lr helped
after 248 steps but hurt at a 600 s budget, and were not kept)."""
CLOCKS = dict(zip(CLOCK_NAMES, (time.perf_counter, time.process_time), strict=True))
"""The clocks a budget in seconds may count (``TrainConfig.clock``): wall-clock, or CPU seconds."""


class History(list):
    """Evaluation records of a training run, oldest first (a list of dicts).

    Each record has ``step``, ``epoch``, ``tokens_seen`` (targets trained on), ``seconds``
    (training wall-clock, evaluations and checkpoints excluded), ``lr``, ``train_loss`` (mean
    NLL in nats per target since the previous record; ``None`` at step 0) and
    ``dev_perplexity`` (``None`` without a dev corpus). Record 0 is the starting point.

    Attributes:
        stopped: what ended training, one of :data:`STOP_REASONS`.
    """

    stopped: str = ""


# --- budgets and schedule ------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """Limits on a training run; it stops at whichever is reached first.

    Attributes:
        epochs: passes over ``n_targets`` targets (``None``: no limit).
        max_seconds: training wall-clock seconds (``None``: no limit).
        max_tokens: targets trained on (``None``: no limit).
        n_targets: targets in one epoch.
    """

    epochs: float | None
    max_seconds: float | None
    max_tokens: int | None
    n_targets: int

    def __post_init__(self) -> None:
        if self.epochs is None and self.max_seconds is None and self.max_tokens is None:
            raise InvalidParameterError("give at least one budget: epochs, max_seconds or max_tokens")
        for name in ("epochs", "max_seconds", "max_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 < value < math.inf):
                raise InvalidParameterError(f"{name} must be a finite number > 0 or None, got {value!r}")
        if self.n_targets < 1:
            raise InvalidParameterError("the training corpus has no targets (every document is empty)")

    def _limits(self) -> dict[str, tuple[float, str]]:
        """Each active budget as (limit, which counter it bounds: 'tokens' or 'seconds')."""
        limits = {}
        if self.epochs is not None:
            limits["epochs"] = (self.epochs * self.n_targets, "tokens")
        if self.max_tokens is not None:
            limits["max_tokens"] = (self.max_tokens, "tokens")
        if self.max_seconds is not None:
            limits["max_seconds"] = (self.max_seconds, "seconds")
        return limits

    def progress(self, tokens: int, seconds: float) -> float:
        """Fraction in [0, 1] of the budget closest to its limit."""
        used = {"tokens": tokens, "seconds": seconds}
        return min(1.0, max(used[counter] / limit for limit, counter in self._limits().values()))

    def exhausted(self, tokens: int, seconds: float) -> str | None:
        """The name of the first exhausted budget, or ``None``."""
        used = {"tokens": tokens, "seconds": seconds}
        return next((name for name, (limit, counter) in self._limits().items()
                     if used[counter] >= limit), None)

    @property
    def total_tokens(self) -> int | None:
        """The token limit, when one is known in advance (for the progress bar)."""
        token_limits = [limit for limit, counter in self._limits().values() if counter == "tokens"]
        return int(min(token_limits)) if token_limits else None


def lr_factor(step: int, progress: float, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear warmup over ``warmup_steps``, then cosine decay to
    :data:`LR_FLOOR` as ``progress`` (fraction of the budget used) goes from 0 to 1."""
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return warmup * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))


class Stopwatch:
    """Seconds since construction on ``clock`` (a key of :data:`CLOCKS`: ``"wall"`` seconds or
    ``"cpu"`` seconds of the process), not counting the time spent inside :meth:`paused` (read
    inside a pause, it gives the time at which the pause began)."""

    def __init__(self, clock: str = "wall") -> None:
        if clock not in CLOCKS:
            raise InvalidParameterError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
        self.clock = clock
        self._now = CLOCKS[clock]
        self._started = self._now()
        self._paused = 0.0
        self._pause_began: float | None = None

    @property
    def seconds(self) -> float:
        now = self._now() if self._pause_began is None else self._pause_began
        return now - self._started - self._paused

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        if self._pause_began is not None:  # nested: the outer pause already stops the clock
            yield
            return
        self._pause_began = self._now()
        try:
            yield
        finally:
            self._paused += self._now() - self._pause_began
            self._pause_began = None


@contextlib.contextmanager
def torch_runtime(seed: int, n_jobs: int | None = None) -> Iterator[None]:
    """Seed PyTorch, make it deterministic and give it ``n_jobs`` threads (default: the kernel
    thread setting, all cores unless configured); previous settings are restored on exit."""

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    torch.set_num_threads(n_jobs or get_num_threads())
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


# --- evaluation ------------------------------------------------------------------------------------


def evaluate(module: SaffuModule, corpus: TokenizedCorpus,
             batch_targets: int = EVAL_BATCH_TARGETS) -> dict[str, float]:
    """Perplexity and bits per character of ``module`` on held-out documents (METHOD.md §6).

    Returns the keys of :meth:`saffu.model.SaffuModel.score`: ``perplexity``, ``bits_per_char``,
    ``nll`` (nats), ``tokens``, ``characters``, ``documents``.
    """


    _check_corpus(corpus, "corpus")
    was_training = module.training
    module.eval()
    nll = 0.0
    with torch.no_grad():
        for batch in corpus_batches(corpus, module.specs, batch_targets, skip=module.skip):
            nll += float(F.cross_entropy(module.logits(batch), batch.targets, reduction="sum"))
    module.train(was_training)
    tokens = corpus.n_targets
    if tokens == 0:
        raise InvalidParameterError("cannot score an empty corpus: it has no tokens to predict")
    return {"perplexity": math.exp(nll / tokens),
            "bits_per_char": nll / (math.log(2) * max(corpus.n_characters, 1)),
            "nll": nll, "tokens": tokens, "characters": corpus.n_characters,
            "documents": corpus.n_documents}


def _check_corpus(corpus: object, name: str) -> None:
    if not isinstance(corpus, TokenizedCorpus):
        raise InvalidParameterError(f"{name} must be a TokenizedCorpus (encode documents with model.encode), "
                                    f"got {type(corpus).__name__}")


# --- training --------------------------------------------------------------------------------------


def train(module: SaffuModule, corpus: TokenizedCorpus, dev: TokenizedCorpus | None = None,
          config: TrainConfig | None = None, *, checkpoint_dir: str | None = None,
          n_jobs: int | None = None, verbose: int = 1,
          on_eval: Callable[[dict[str, Any], SaffuModule], None] | None = None,
          lr_scales: Mapping[str, float] | None = None, **options: Any) -> History:
    """Train ``module`` in place by AdamW on the mean cross-entropy per target.

    The options are a :class:`~saffu.train_config.TrainConfig` (``config``), or its fields as
    keyword arguments (``train(module, corpus, dev, lr=0.01, max_seconds=60)``), which replace
    those of ``config`` (their meaning: *Keyword Args* below).

    Args:
        module: a :class:`~saffu.torch.SaffuModule` (warm: :func:`~saffu.torch.to_torch`; cold:
            :func:`~saffu.torch.cold_start`).
        corpus: training documents, encoded with the model's tokenizer.
        dev: held-out documents for perplexity, early stopping and the best weights.
        config: the options (default ``TrainConfig()``); keyword options replace its fields.
        checkpoint_dir: save the best model so far here (``from_torch(module).save``) at each
            evaluation where it changes and at the end; needs a module with a template model.
        n_jobs: PyTorch threads (default: all cores).
        verbose: 0 hides the progress bar (it is also hidden when stderr is not a terminal).
        on_eval: called as ``on_eval(record, module)`` at each evaluation before the record is
            stored; it may add keys (e.g. a test perplexity). Its time is not counted.
        lr_scales: learning-rate multiplier of each parameter group (:data:`PARAMETER_GROUPS`:
            ``attention`` W, ``hidden`` U, ``output`` O, ``bias`` o, ``cipher``); unnamed
            groups get 1, and 0 freezes a group. Default: :data:`WARM_LR_SCALES` for a warm
            start (``module.start == "explicit"``: the output layer at 0.03·lr, so that the
            first steps do not undo the explicit output layer), 1 everywhere for a cold start.

    Keyword Args:
        lr (float): peak learning rate (after ``warmup_steps`` linear warmup steps; cosine decay
            to ``LR_FLOOR·lr`` over the tightest budget). The default 0.1 was the best of 3e-4 to
            0.3 for both warm and cold starts on Shakespeare (bench/RESULTS.md): the softmax
            hidden layers need large steps.
        weight_decay (float): AdamW decoupled weight decay of the weight matrices (not of
            ``o``/cipher).
        batch_targets (int): targets per mini-batch (consecutive targets of one chunk).
        epochs (float | None): a budget in passes over the corpus; training stops at the first
            budget reached (``epochs``, ``max_seconds`` or ``max_tokens``).
        max_seconds (float | None): a budget in training seconds on ``clock``, evaluations
            and checkpoints excluded.
        max_tokens (int | None): a budget in training targets.
        max_grad_norm (float | None): gradient-norm clipping (``None``: off).
        eval_every (int): steps between evaluations; each gap is ``eval_growth`` times the
            previous one (1: evenly spaced; 2: at steps ``e, 3e, 7e, …`` for curves on a log axis).
        patience (int | None): stop after this many evaluations without a better dev perplexity
            (``None``: never). With ``dev``, the best weights are put back into ``module`` at the
            end.
        seed (int): seeds the batch order and PyTorch; on CPU a run is deterministic unless
            ``max_seconds`` binds (the schedule and the stopping point then follow the clock).
        thaw_after (int | None): the method's own schedule (METHOD.md §5): the cipher vectors
            stay frozen (the module must be made with ``thaw_cipher=False``) while the upper
            layers train, then from this step on they train too, at ``thaw_lr_scale·lr``
            (``None``: never).
            The module keeps the thawed cipher (``from_torch`` exports it).
        thaw_lr_scale (float): learning-rate multiplier of the cipher once thawed (> 0).
        clock (str): what the seconds of ``max_seconds`` and of the records count: ``"wall"``
            (wall-clock) or ``"cpu"`` (CPU seconds of this process, all its threads; steadier
            than wall-clock on a shared machine with one thread).

    Returns:
        the :class:`History` of evaluations.
    """

    if not isinstance(module, SaffuModule):
        raise InvalidParameterError(f"module must be a SaffuModule, got {type(module).__name__}")
    _check_corpus(corpus, "corpus")
    if dev is not None:
        _check_corpus(dev, "dev")
    config = (config or TrainConfig()).replace(**options)
    budget = Budget(config.epochs, config.max_seconds, config.max_tokens, corpus.n_targets)
    scales = _lr_scales(module, lr_scales)
    _check_thaw(module, config.thaw_after)
    if checkpoint_dir is not None and module.template is None:
        raise InvalidParameterError("checkpoint_dir needs a module made by to_torch or cold_start(model)")
    with torch_runtime(config.seed, n_jobs):
        run = _Run(module, dev, on_eval, checkpoint_dir, lr=config.lr,
                   weight_decay=config.weight_decay, patience=config.patience, lr_scales=scales,
                   clock=config.clock)
        batches = _endless_batches(corpus, module, config.batch_targets,
                                   np.random.default_rng(config.seed))
        gap, next_eval = float(config.eval_every), config.eval_every
        run.evaluate()
        with _progress_bar(budget.total_tokens, verbose) as bar:
            while not (stopped := budget.exhausted(run.tokens, run.clock.seconds) or run.out_of_patience):
                run.epoch, batch = next(batches)
                if run.step == config.thaw_after:
                    run.thaw_cipher(config.thaw_lr_scale)
                rate = config.lr * lr_factor(run.step, budget.progress(run.tokens, run.clock.seconds),
                                             config.warmup_steps)
                run.train_step(batch, rate, config.max_grad_norm)
                bar.update(len(batch))
                bar.set_postfix(loss=f"{run.last_loss:.3f}", ppl=f"{_perplexity(run.last_loss):.1f}")
                if run.step >= next_eval:
                    run.evaluate()
                    gap *= config.eval_growth
                    next_eval = run.step + max(1, round(gap))
        if run.history[-1]["step"] != run.step:
            run.evaluate()
        run.finish(stopped)
    return run.history


def _perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf  # a diverged loss must not crash the bar


def _lr_scales(module: SaffuModule, lr_scales: Mapping[str, float] | None) -> dict[str, float]:
    """The learning-rate multiplier of every parameter group (see :func:`train`)."""
    if lr_scales is None:
        lr_scales = WARM_LR_SCALES if module.start == "explicit" else {}
    if not isinstance(lr_scales, Mapping):
        raise InvalidParameterError(f"lr_scales must be a mapping of group names to numbers, got "
                                    f"{type(lr_scales).__name__}")
    unknown = set(lr_scales) - set(PARAMETER_GROUPS)
    if unknown:
        raise InvalidParameterError(f"unknown parameter groups in lr_scales: "
                                    f"{', '.join(sorted(map(str, unknown)))} "
                                    f"(known: {', '.join(PARAMETER_GROUPS)})")
    for name, scale in lr_scales.items():
        if not (is_real(scale) and 0 <= scale < math.inf):
            raise InvalidParameterError(f"lr_scales[{name!r}] must be a finite number ≥ 0, got {scale!r}")
    return {name: float(lr_scales.get(name, 1.0)) for name in PARAMETER_GROUPS}


def _check_thaw(module: SaffuModule, thaw_after: int | None) -> None:
    """The thaw schedule needs a frozen cipher (its values are checked by TrainConfig)."""
    if thaw_after is not None and module.cipher_thawed:
        raise InvalidParameterError("thaw_after needs a frozen cipher: make the module with "
                                    "thaw_cipher=False")


def _endless_batches(corpus: TokenizedCorpus, module: SaffuModule, batch_targets: int,
                     rng: np.random.Generator) -> Iterator[tuple[int, ContextBatch]]:
    """(epoch, batch) pairs, epoch after epoch; the budget decides when to stop."""

    for epoch in itertools.count():
        for batch in corpus_batches(corpus, module.specs, batch_targets, rng, skip=module.skip):
            yield epoch, batch


def _progress_bar(total_tokens: int | None, verbose: int) -> tqdm:
    return tqdm(total=total_tokens, desc="saffu backprop", unit="tok", unit_scale=True,
                disable=not verbose or not sys.stderr.isatty(), leave=False)


def _parameter_groups(module: SaffuModule, weight_decay: float,
                      lr_scales: Mapping[str, float]) -> list[dict[str, Any]]:
    """One AdamW group per :data:`PARAMETER_GROUPS` entry the module trains, named (``name``) and
    with its learning-rate multiplier (``lr_scale``); weight decay on W, U, O and the skip weights."""
    groups: dict[str, list[torch.nn.Parameter]] = {}
    for name, parameter in module.named_parameters():
        groups.setdefault(_group_of(name), []).append(parameter)
    return [_group(name, groups[name], weight_decay, lr_scales[name])
            for name in PARAMETER_GROUPS if name in groups]


def _group(name: str, params: list[Any], weight_decay: float, lr_scale: float) -> dict[str, Any]:
    decayed = name in ("attention", "hidden", "output", "skip")
    return {"params": params, "name": name, "lr_scale": lr_scale,
            "weight_decay": weight_decay if decayed else 0.0}


def _group_of(parameter_name: str) -> str:
    """The group of a module parameter: ``attention.0`` → attention, ``hidden_t.1`` → hidden, …"""
    return {"attention": "attention", "hidden_t": "hidden", "output_t": "output",
            "skip_weight": "skip", "output_bias": "bias",
            "cipher": "cipher"}[parameter_name.split(".")[0]]


class _Run:
    """State of one call to :func:`train`: counters, clock, optimizer, best weights, history."""

    def __init__(self, module: SaffuModule, dev: TokenizedCorpus | None,
                 on_eval: Callable[[dict[str, Any], SaffuModule], None] | None,
                 checkpoint_dir: str | None, *, lr: float, weight_decay: float,
                 patience: int | None, lr_scales: Mapping[str, float], clock: str) -> None:

        self.module, self.dev, self.on_eval, self.checkpoint_dir = module, dev, on_eval, checkpoint_dir
        self.optimizer = torch.optim.AdamW(_parameter_groups(module, weight_decay, lr_scales), lr=lr)
        self.history = History()
        self.clock = Stopwatch(clock)
        self.step = self.tokens = self.epoch = 0
        self.lr = 0.0
        self.last_loss = math.nan
        self._loss_sum = 0.0  # Σ NLL of the targets since the last evaluation
        self._loss_targets = 0
        self.best_perplexity = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stale_evaluations = 0
        self.patience = patience

    @property
    def out_of_patience(self) -> str | None:
        if self.patience is not None and self.stale_evaluations >= self.patience:
            return "patience"
        return None

    def thaw_cipher(self, lr_scale: float) -> None:
        """Make the cipher vectors a parameter and train them from now on at ``lr_scale·lr``."""
        self.module.thaw_cipher()
        self.optimizer.add_param_group(_group("cipher", [self.module.cipher], 0.0, lr_scale))

    def train_step(self, batch: ContextBatch, lr: float, max_grad_norm: float | None) -> None:
        """One AdamW step at peak-relative rate ``lr`` (each group at ``lr_scale·lr``)."""

        self.module.train()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.module.logits(batch), batch.targets)
        loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), max_grad_norm)
        self.optimizer.step()
        self.last_loss = loss.item()
        self.lr = lr
        self.step += 1
        self.tokens += len(batch)
        self._loss_sum += self.last_loss * len(batch)
        self._loss_targets += len(batch)

    def evaluate(self) -> None:
        """Append a record (dev perplexity if there is a dev corpus); the clock is paused."""
        with self.clock.paused():
            record = {"step": self.step, "epoch": self.epoch, "tokens_seen": self.tokens,
                      "seconds": self.clock.seconds, "lr": self.lr,
                      "train_loss": self._loss_sum / self._loss_targets if self._loss_targets else None,
                      "dev_perplexity": None}
            self._loss_sum, self._loss_targets = 0.0, 0
            if self.dev is not None:
                record["dev_perplexity"] = evaluate(self.module, self.dev)["perplexity"]
            if self.on_eval is not None:
                self.on_eval(record, self.module)
            self.history.append(record)
            if self._improved(record["dev_perplexity"]) and self.checkpoint_dir is not None:
                self._save()

    def _improved(self, perplexity: float | None) -> bool:
        """Track the best weights; without dev the latest weights count as the best."""
        if perplexity is None:
            return True
        if perplexity < self.best_perplexity:
            self.best_perplexity, self.stale_evaluations = perplexity, 0
            self.best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
            return True
        self.stale_evaluations += 1
        return False

    def finish(self, stopped: str) -> None:
        """Put the best weights back and write the final checkpoint."""
        self.history.stopped = stopped
        if self.best_state is not None:
            self.module.load_state_dict(self.best_state)
        if self.checkpoint_dir is not None:
            with self.clock.paused():
                self._save()

    def _save(self) -> None:

        model = from_torch(self.module)
        model.fit_info["backprop"] = {
            "steps": self.step, "tokens_seen": self.tokens, "seconds": self.clock.seconds,
            "dev_perplexity": None if self.dev is None else self.best_perplexity,
            "stopped": self.history.stopped or None}
        model.save(self.checkpoint_dir)
