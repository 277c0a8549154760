"""The former location of :mod:`saffu.torch.init` (kept so that existing imports work)."""

from saffu.torch.init import explicit_init_

__all__ = ["explicit_init_"]
