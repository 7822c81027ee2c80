"""Surrogate models: rank architectures by 1-day accuracy, predict AVM and 1-day std."""

from lightning_nas.surrogate.meta import SurrogateMeta
from lightning_nas.surrogate.predictor import SurrogatePredictor
from lightning_nas.surrogate.specs import MODELS, ModelSpec

__all__ = ["MODELS", "ModelSpec", "SurrogateMeta", "SurrogatePredictor"]
