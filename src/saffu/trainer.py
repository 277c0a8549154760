"""The former location of :mod:`saffu.torch.training` (kept so that existing imports work)."""

from saffu.torch.training import *  # noqa: F403
from saffu.torch.training import __all__  # noqa: F401
