"""Surrogate models: rank architectures by 1-day accuracy, predict AVM and 1-day std."""

from lightning_nas.surrogate.predictor import SurrogatePredictor

__all__ = ["SurrogatePredictor"]
