"""Search over the space with a surrogate predictor: objectives, strategies, outputs."""
