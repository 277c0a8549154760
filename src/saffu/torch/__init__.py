"""Backpropagation for SAFFU models (METHOD.md §5), with PyTorch (``pip install 'saffu[torch]'``).

- :mod:`saffu.torch.module`: the forward pass as an ``nn.Module`` equal to the NumPy model
  (:class:`SaffuModule`), batches of contexts, the warm start (:func:`to_torch`), the cold start
  (:func:`cold_start`) and the way back (:func:`from_torch`);
- :mod:`saffu.torch.init`: :func:`explicit_init_`, the explicit solution as the initialization
  of any ``nn.Linear`` that feeds a softmax;
- :mod:`saffu.torch.training`: :func:`train` (AdamW, budgets, dev early stopping, learning rate
  per parameter group, the thaw schedule) and :func:`evaluate`; its options are
  :class:`saffu.train_config.TrainConfig`.

Only this package imports PyTorch; the rest of saffu, the command line included, works without it.
"""

from saffu.torch.init import explicit_init_
from saffu.torch.module import (
    ContextBatch,
    SaffuModule,
    cold_start,
    context_batch,
    corpus_batches,
    from_torch,
    to_torch,
)
from saffu.torch.training import PARAMETER_GROUPS, WARM_LR_SCALES, History, evaluate, train

__all__ = [
    "PARAMETER_GROUPS",
    "WARM_LR_SCALES",
    "ContextBatch",
    "History",
    "SaffuModule",
    "cold_start",
    "context_batch",
    "corpus_batches",
    "evaluate",
    "explicit_init_",
    "from_torch",
    "to_torch",
    "train",
]
