"""What a loss term is, how it is registered by name and built from ``loss.terms``.

A term is an ``nn.Module``: its parameters train (they are handed to the optimiser and
synchronised by DistributedDataParallel with the network's), its buffers and
sub-modules (a queue, a momentum copy of the network) are saved in every training
checkpoint and restored on resume, :meth:`LossTerm.after_step` runs after each optimiser
step (momentum updates), and :meth:`LossTerm.views` asks the data pipeline for extra
augmented images without the pipeline knowing the term.

    from sfrs.training import LossTerm, register_term

    @register_term("spread")
    class Spread(LossTerm):
        def forward(self, batch, descriptors):
            return -descriptors.global_.var(dim=0).sum()

    # sfrs-train --set plugins=[my_module] --set loss.terms.spread.weight=0.1
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, Optional, Tuple, Type, Union

from torch import Tensor, nn

from sfrs.config import GenerationConfig, LossConfig, from_dict
from sfrs.errors import ConfigError

if TYPE_CHECKING:  # annotations only: the pipeline imports terms, not the other way round
    from sfrs.models import GeoNet
    from sfrs.training.objective import BatchDescriptors
    from sfrs.training.tuples import TupleBatch


@dataclass(frozen=True)
class NoOptions:
    """Options of a term that has none besides its weight."""


VIEW_SOURCES = ("query", "positive", "negative")


@dataclass(frozen=True)
class ViewRequest:
    """An extra image per tuple, delivered as ``batch.views[name]`` (B, 3, H, W) and
    encoded into ``descriptors.views[name]`` (B, D).

    Attributes:
        source: ``query``, ``positive`` (the tuple's best positive) or ``negative`` (its
            hardest negative; needs ``needs_hard_negatives``).
        transform: PIL image -> (3, H, W) tensor at the network's input size; it runs under
            the tuple's seed, so a resumed run sees the same view.
        encode: the student encodes it into ``descriptors.views[name]``; False when only
            the term's own networks (e.g. a momentum encoder) read ``batch.views[name]``.
    """

    source: str
    transform: Callable[[Any], Tensor]
    encode: bool = True

    def __post_init__(self) -> None:
        if self.source not in VIEW_SOURCES:
            raise ValueError(f"a view's source must be one of {', '.join(VIEW_SOURCES)}, got {self.source!r}")


@dataclass(frozen=True)
class TermContext:
    """What a term may know when it is built (once per generation).

    Attributes:
        generation: index of the generation. schedule: its schedule entry.
        temperature: ``loss.temperature``, the similarity temperature of the SFRS terms.
        network: the student at the start of the generation, to read its sizes and
            preprocessing or to copy (a momentum encoder); a term must not keep it as a
            sub-module (its parameters belong to the student).
    """

    generation: int
    schedule: GenerationConfig
    temperature: float
    network: Optional["GeoNet"] = None


@dataclass
class TermOutput:
    """A term's value and optional diagnostics (logged as ``<term>/<name>``)."""

    value: Tensor
    stats: Dict[str, float] = field(default_factory=dict)


class LossTerm(nn.Module):
    """Base class of loss terms; subclass, set ``Options`` and register with
    :func:`register_term`.

    Class attributes:
        name: the registered name (set by :func:`register_term`).
        Options: a frozen dataclass of the term's options; ``loss.terms.<name>.<option>``
            is type-checked against it and unknown options are rejected.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any = None, context: Optional[TermContext] = None) -> None:
        super().__init__()
        self.options = options if options is not None else self.Options()
        self.context = context

    @classmethod
    def generation_weight(cls, schedule: GenerationConfig) -> float:
        """Factor of the configured weight in a generation (1; the soft term: soft_weight)."""
        return 1.0

    @property
    def needs_regions(self) -> bool:
        """True when ``descriptors.regions`` (K, 9, D) must be computed."""
        return False

    @property
    def needs_difficult_positives(self) -> bool:
        """True when tuples must carry difficult positives and their teacher labels."""
        return False

    @property
    def needs_hard_negatives(self) -> bool:
        """True when tuples must carry hard negatives (mined at every cache refresh)."""
        return False

    @property
    def needs_tuple_images(self) -> bool:
        """True when the term reads the descriptors of the tuple's images
        (``descriptors.global_`` / ``regions``); False for terms that use views only."""
        return True

    def views(self) -> Dict[str, ViewRequest]:
        """Extra images this term needs, by name (names are shared across terms)."""
        return {}

    def forward(self, batch: "TupleBatch", descriptors: "BatchDescriptors") -> Union[Tensor, TermOutput]:
        """The term's scalar value on one batch (a tensor, or a :class:`TermOutput`)."""
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after every optimiser step (e.g. a momentum update); no-op by default."""

    def describe(self) -> str:
        """A few words for the plan and the log."""
        fields = ", ".join(f"{f.name} {getattr(self.options, f.name)!r}" for f in dataclasses.fields(self.options))
        return f"{self.name}" + (f" ({fields})" if fields else "")


#: registered name -> term class.
TERMS: Dict[str, Type[LossTerm]] = {}


def register_term(name: str) -> Callable[[Type[LossTerm]], Type[LossTerm]]:
    """Class decorator: make a :class:`LossTerm` subclass available as ``loss.terms.<name>``."""

    def decorate(cls: Type[LossTerm]) -> Type[LossTerm]:
        if not (isinstance(cls, type) and issubclass(cls, LossTerm)):
            raise TypeError(f"@register_term('{name}') needs a LossTerm subclass, got {cls!r}")
        if not dataclasses.is_dataclass(cls.Options):
            raise TypeError(f"{cls.__name__}.Options must be a dataclass")
        if name in TERMS and TERMS[name] is not cls:
            raise ValueError(f"a loss term named '{name}' is already registered ({TERMS[name].__name__})")
        cls.name = name
        TERMS[name] = cls
        return cls

    return decorate


@dataclass(frozen=True)
class TermSpec:
    """A configured term: its class, configured weight and typed options."""

    cls: Type[LossTerm]
    weight: float
    options: Any


def term_specs(loss: LossConfig) -> Dict[str, TermSpec]:
    """Validate ``loss.terms`` against the registry (names, weights, options).

    Raises:
        ConfigError: an unknown term, option or a wrong type, named by its key.
    """
    specs: Dict[str, TermSpec] = {}
    for name, entry in loss.terms.items():
        if name not in TERMS:
            raise ConfigError(
                f"loss.terms.{name}: unknown loss term (registered: {', '.join(sorted(TERMS))}; "
                "a term of your own is registered by a module listed in 'plugins')"
            )
        entry = dict(entry)
        weight = entry.pop("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"loss.terms.{name}.weight must be a number >= 0, got {weight!r}")
        cls = TERMS[name]
        specs[name] = TermSpec(cls=cls, weight=float(weight), options=from_dict(cls.Options, entry, f"loss.terms.{name}"))
    return specs


def build_terms(loss: LossConfig, context: TermContext) -> Dict[str, Tuple[float, LossTerm]]:
    """The terms active in ``context.generation``: name -> (effective weight, module).

    A term whose effective weight (configured weight x :meth:`LossTerm.generation_weight`)
    is 0 in this generation is left out: it computes nothing and needs nothing.
    """
    active: Dict[str, Tuple[float, LossTerm]] = {}
    for name, spec in term_specs(loss).items():
        weight = spec.weight * spec.cls.generation_weight(context.schedule)
        if weight > 0:
            active[name] = (weight, spec.cls(spec.options, context))
    return active
