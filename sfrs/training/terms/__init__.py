"""Loss terms as modules behind a registry: ``hard`` (SARE / triplet), ``soft`` (SFRS soft
region labels) and the self-supervised GeoPair terms ``simclr``, ``moco``, ``byol``,
``simsiam``, ``barlow_twins``, ``vicreg`` ship with the package; see
:mod:`sfrs.training.terms.base` to add one."""
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
from sfrs.training.terms import hard as _hard, soft as _soft, ssl as _ssl  # noqa: F401  (registration)
from sfrs.training.terms.hard import HardOptions, HardTerm
from sfrs.training.terms.soft import SoftRegionTerm
from sfrs.training.terms.ssl import (
    BarlowTwinsTerm, BYOLTerm, MoCoTerm, SimCLRTerm, SimSiamTerm, VICRegTerm,
)

__all__ = [
    "TERMS", "BarlowTwinsTerm", "BYOLTerm", "MoCoTerm", "SimCLRTerm", "SimSiamTerm", "VICRegTerm",
    "HardOptions", "HardTerm", "LossTerm", "NoOptions", "SoftRegionTerm", "TermContext",
    "TermOutput", "TermSpec", "ViewRequest", "build_terms", "register_term", "term_specs",
]
