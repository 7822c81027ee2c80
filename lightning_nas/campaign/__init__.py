"""Surrogate-dataset campaigns: train many sampled architectures, store one row each."""
