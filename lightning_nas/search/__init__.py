"""Evolutionary search over the space with a surrogate predictor."""
