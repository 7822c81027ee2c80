"""lightning_nas: analog-hardware-aware neural architecture search on PyTorch Lightning + aihwkit."""

__version__ = "0.1.0"
