"""The version of saffu, written once: the package and the wheel metadata (pyproject.toml) read it."""

__version__ = "0.1.0"
