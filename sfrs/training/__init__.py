"""SFRS training: generations of a student supervised by hard tuples and its teacher's
soft region labels, with loss terms as modules.

    from sfrs.config import load_config
    from sfrs.training import train
    results = train(load_config(overrides=["train.generations.*.epochs=1"]), "runs/demo")

Add a loss term of your own with :class:`LossTerm` and :func:`register_term`.
"""
from sfrs.training.generations import train
from sfrs.training.objective import BatchDescriptors, Objective, ObjectiveOutput
from sfrs.training.terms import TERMS, LossTerm, TermContext, TermOutput, ViewRequest, build_terms, register_term
from sfrs.training.trainer import TrainingError
from sfrs.training.tuples import TupleBatch

__all__ = [
    "TERMS", "BatchDescriptors", "LossTerm", "Objective", "ObjectiveOutput", "TermContext", "TermOutput",
    "TrainingError", "TupleBatch", "ViewRequest", "build_terms", "register_term", "train",
]
