"""Lightning callbacks of lightning_nas (importable as ``callbacks`` after install)."""

from callbacks.drift_evaluation import METRICS_FILE, DriftEvaluation

__all__ = ["DriftEvaluation", "METRICS_FILE"]
