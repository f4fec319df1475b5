"""Training of the NPE model with data made on the fly; checkpoints that resume."""

from .trainer import run_train_stage, select_device, train_settings

__all__ = ["run_train_stage", "select_device", "train_settings"]
