"""The configuration of a SAFFU model: every field, its default, its help text and its parsing.

:class:`SaffuConfig` is the one place a model setting is defined. Each field carries its help
text (``metadata["help"]``) and, for fields that may be ``None``, the word that stands for
``None`` on the command line and in sweep grids (``metadata["none"]``). The CLI options, the
sweep grid parser and the docs derive from these: adding a field means adding it here (with its
validation in ``__post_init__``, and a ``neutral`` value: the one that gives the model fitted
before the field existed, so that stored sweep results keep their keys), nothing else;
``tests/test_config.py`` fails if a field lacks help text or a later field lacks a neutral value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from saffu.errors import InvalidParameterError
from saffu.kinds import Aggregation
from saffu.layers import ContextSpec
from saffu.validation import check_bool, check_choice, check_int, check_real, field_type

__all__ = ["ATTENTIONS", "PREVIOUS_DEFAULTS", "ROADMAP_DEFAULTS", "SKIP_DEFAULTS", "TOKENIZERS",
           "SaffuConfig"]

TOKENIZERS = ("bpe", "char", "word")
ATTENTIONS = ("explicit", "uniform")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


_NO_NEUTRAL = object()


def _field(default: Any, help: str, *, none: str | None = None, neutral: Any = _NO_NEUTRAL) -> Any:
    """A config field with its help text; ``none`` is the word that stands for ``None``.

    ``neutral`` is, for a field added after the first release, the value that gives the model
    saffu fitted before the field existed: sweep keys leave the field out at that value, so
    stored sweep results stay valid (see :meth:`SaffuConfig.key_fields`).
    """
    return dataclasses.field(default=default, metadata={"help": help, "none": none, "neutral": neutral})


PREVIOUS_DEFAULTS = {"bits": 256, "hidden": 256, "radial": 1, "aggregation": "sum", "tau": 2.0,
                     "output_tau": 3.0, "alpha": 0.1, "skip": 0, "extra_contexts": ""}
"""The defaults before the roadmap (issue 6), for benchmarks whose recorded runs used them."""
ROADMAP_DEFAULTS = {"tau": 4.0, "output_tau": 1.5, "alpha": 0.1, "skip": 0, "extra_contexts": ""}
"""The defaults chosen after the roadmap (dev 138.9), before the skip inputs (issue 13)."""
SKIP_DEFAULTS = {"extra_contexts": ""}
"""The defaults with skip inputs and one context model (dev 107.2; issue 13, first step)."""


@dataclass(frozen=True)
class SaffuConfig:
    """Everything that defines a SAFFU model; validated on construction.

    Every field's meaning is its ``help`` metadata (``SaffuConfig.help(name)``); ``None`` values
    mean "derive it": the minimum bits, D = bits, K = the mean input mass, temperatures chosen
    by the fit (the fitted model's config holds the chosen values).
    """

    tokenizer: str = _field("bpe", "tokenizer kind: bpe, char or word")
    vocab_size: int = _field(4096, "tokenizer vocabulary size (special tokens included)")
    bits: int | None = _field(2048, "cipher code length; 'min' = ceil(log2(|V|+1))", none="min")
    hidden: int | None = _field(256, "hidden width D per context model (label-code bits); "
                                     "'bits' = the cipher's bits", none="bits")
    radial: int = _field(2, "r, previous tokens seen by the radial context model (0 = off)")
    block: int = _field(0, "B, block length of the block context model (0 = off)")
    document: bool = _field(False, "include the document (running mean) context model")
    aggregation: str = _field("cat", "attention aggregation: sum (z has bits values) or cat "
                                     "(K·bits)")
    attention: str = _field("explicit", "attention weights: explicit (fitted from per-position "
                                        "experts) or uniform (W = 0)")
    tau: float | None = _field(6.0, "temperature of the attention and hidden layers' likelihood "
                                    "terms; 'auto' = chosen by the fit on a held-out slice of the "
                                    "training documents", none="auto")
    output_tau: float | None = _field(None, "temperature of the output layer's likelihood terms; "
                                           "'auto' = chosen by the fit like tau", none="auto")
    alpha: float = _field(0.03, "additive smoothing of every explicit solve")
    priming: float | None = _field(None, "priming number K of the folded forms; 'mean' = the mean "
                                         "input mass", none="mean")
    cipher_smoothing: bool = _field(False, "smooth the cipher vectors (METHOD.md §2)")
    # Fields added after the first release take a ``neutral`` value (see ``_field``).
    skip: int = _field(2, "S: the output layer also reads the cipher vectors of the last S tokens, "
                          "beside the hidden vectors (0 = off)", neutral=0)
    extra_contexts: str = _field("radial1", "more context models beside radial, block and document, each "
                                     "with its own attention and hidden layer, joined at the "
                                     "output: comma-separated names such as 'radial1,radial3' or "
                                     "'block16' ('' = none; one equal to a model already on is "
                                     "left out)", neutral="")

    def __post_init__(self) -> None:
        try:
            check_choice("tokenizer", self.tokenizer, TOKENIZERS)
            check_int("vocab_size", self.vocab_size, 8)
            check_int("bits", self.bits, 1, 65536, optional=True)
            check_int("hidden", self.hidden, 1, 65536, optional=True)
            check_int("radial", self.radial, 0, 1024)
            check_int("block", self.block, 0, 4096)
            check_bool("document", self.document)
            object.__setattr__(self, "extra_contexts", _canonical_contexts(self.extra_contexts))
            self._check_context_specs()
            Aggregation.parse(self.aggregation)
            check_choice("attention", self.attention, ATTENTIONS)
            for name in ("tau", "output_tau"):
                check_real(name, getattr(self, name), 0, exclusive_minimum=True, optional=True)
            check_real("alpha", self.alpha, 0, exclusive_minimum=True)
            check_real("priming", self.priming, 0, exclusive_minimum=True, optional=True)
            check_bool("cipher_smoothing", self.cipher_smoothing)
            check_int("skip", self.skip, 0, 64)
        except InvalidParameterError as error:
            raise InvalidParameterError(f"invalid SaffuConfig: {error}") from None

    @property
    def context_specs(self) -> tuple[ContextSpec, ...]:
        """The context models this config turns on, in the order their hidden vectors are joined:
        radial, block, document, then ``extra_contexts`` in their order, less any extra that
        equals one already on (``radial=1`` with the default ``extra_contexts="radial1"`` is one
        radial1 model, not two identical ones)."""
        return (*self._primary_specs(), *self._added_specs())

    def without_repeated_contexts(self) -> SaffuConfig:
        """The same model with ``extra_contexts`` less the extras equal to a model already on."""
        return self.replace(extra_contexts=",".join(spec.name for spec in self._added_specs()))

    def _primary_specs(self) -> tuple[ContextSpec, ...]:
        specs = []
        if self.radial:
            specs.append(ContextSpec("radial", self.radial))
        if self.block:
            specs.append(ContextSpec("block", self.block))
        if self.document:
            specs.append(ContextSpec("document", 1))
        return tuple(specs)

    def _added_specs(self) -> list[ContextSpec]:
        """The ``extra_contexts`` models that are not already among the primary ones."""
        primary = self._primary_specs()
        return [spec for spec in map(ContextSpec.parse, self._extra_names()) if spec not in primary]

    def _extra_names(self) -> list[str]:
        """The names in ``extra_contexts`` (already spelled as :attr:`ContextSpec.name`)."""
        return [name for name in self.extra_contexts.split(",") if name]

    def _check_context_specs(self) -> None:
        if not self.context_specs:
            raise InvalidParameterError(
                "at least one context model (radial, block, document or extra_contexts) must be on")
        names = self._extra_names()
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InvalidParameterError(f"extra_contexts names {', '.join(repeated)} twice")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SaffuConfig:
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise InvalidParameterError(f"invalid SaffuConfig: unknown field(s) {', '.join(unknown)}")
        return cls(**values)

    def replace(self, **changes: Any) -> SaffuConfig:
        return dataclasses.replace(self, **changes)

    def key_fields(self) -> dict[str, Any]:
        """Every field but those at their neutral value: what identifies this config's model
        across saffu versions (sweep variant keys hash it)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata["neutral"] is _NO_NEUTRAL or getattr(self, f.name) != f.metadata["neutral"]}

    def non_default(self) -> dict[str, Any]:
        """The fields whose values differ from the defaults (what a variant key hashes)."""
        defaults = SaffuConfig()
        return {name: value for name, value in self.to_dict().items()
                if value != getattr(defaults, name)}

    # --- the fields, described once -------------------------------------------------------------

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def help(cls, name: str) -> str:
        """The help text of field ``name``."""
        return _fields()[name].metadata["help"]

    @classmethod
    def none_word(cls, name: str) -> str | None:
        """The word that stands for ``None`` in field ``name`` ("min", "bits", "mean"), if any."""
        return _fields()[name].metadata["none"]

    @classmethod
    def parse_value(cls, name: str, value: Any) -> Any:
        """The value of field ``name`` that ``value`` stands for, from the command line (a string)
        or a grid file (a TOML value): the field's none-word or "none" is ``None``; "true"/"false"
        are booleans; integers are floats in float fields (so ``tau = 2`` equals ``tau = 2.0``).

        The value itself is checked when a config is built.
        """
        field = _fields().get(name)
        if field is None:
            raise InvalidParameterError(f"unknown SaffuConfig field {name!r}; fields are "
                                        f"{', '.join(cls.field_names())}")
        base = field_type(cls, name)
        if isinstance(value, str) and value.strip().lower() in ("none", field.metadata["none"]) \
                and field.metadata["none"] is not None:
            return None
        if isinstance(value, str) and base is not str:
            return _parse_text(name, value.strip(), base)
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value


def _canonical_contexts(value: Any) -> str:
    """``extra_contexts`` spelled one way: names as :attr:`ContextSpec.name`, comma-separated."""
    if not isinstance(value, str):
        raise InvalidParameterError(f"extra_contexts must be a string such as 'radial1,radial3', "
                                    f"got {value!r}")
    return ",".join(ContextSpec.parse(name).name for name in value.split(",") if name.strip())


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(SaffuConfig)}


def _parse_text(name: str, text: str, base: type) -> Any:
    lowered = text.lower()
    if base is bool:
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
        raise InvalidParameterError(f"{name} must be true or false, got {text!r}")
    try:
        return base(text)
    except ValueError:
        none = SaffuConfig.none_word(name)
        also = f" or '{none}'" if none else ""
        raise InvalidParameterError(f"{name} must be {'an int' if base is int else 'a number'}"
                                    f"{also}, got {text!r}") from None
