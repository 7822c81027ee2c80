"""Lightning callbacks of lightning_nas, installed as ``lightning_nas.callbacks``.

The source folder is the top-level ``callbacks/`` (the project's layout); ``pyproject.toml``
maps it into the package, so nothing named ``callbacks`` lands in site-packages.
"""

from lightning_nas.callbacks.drift_evaluation import METRICS_FILE, DriftEvaluation
from lightning_nas.callbacks.learning_curve import LearningCurve

__all__ = ["DriftEvaluation", "LearningCurve", "METRICS_FILE"]
