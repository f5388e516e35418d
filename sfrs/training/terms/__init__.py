"""Loss terms as modules behind a registry: ``hard`` (SARE / triplet) and ``soft`` (SFRS
soft region labels) ship with the package; see :mod:`sfrs.training.terms.base` to add one."""
from sfrs.training.terms.base import (
    TERMS,
    LossTerm,
    NoOptions,
    TermContext,
    TermOutput,
    TermSpec,
    ViewRequest,
    build_terms,
    register_term,
    term_specs,
)
from sfrs.training.terms import hard as _hard, soft as _soft  # noqa: F401  (registration)
from sfrs.training.terms.hard import HardOptions, HardTerm
from sfrs.training.terms.soft import SoftRegionTerm

__all__ = [
    "TERMS", "HardOptions", "HardTerm", "LossTerm", "NoOptions", "SoftRegionTerm", "TermContext",
    "TermOutput", "TermSpec", "ViewRequest", "build_terms", "register_term", "term_specs",
]
