"""Trainer callbacks: the TrainerCallback base, AllenNLP 1.x batch/epoch callbacks and the built-ins."""

from regimen.trainers.callbacks.backward import MixedPrecisionBackwardCallback, OnBackwardException
from regimen.trainers.callbacks.callback import BatchCallback, EpochCallback, TrainerCallback
from regimen.trainers.callbacks.confidence_checks import ConfidenceCheckError, ConfidenceChecksCallback
from regimen.trainers.callbacks.console_logger import ConsoleLoggerCallback
from regimen.trainers.callbacks.memory_usage import TensorBoardBatchMemoryUsage, TensorBoardMemoryUsageCallback
from regimen.trainers.callbacks.mlflow import MLflowCallback
from regimen.trainers.callbacks.optuna_pruner import OptunaPrunerCallback
from regimen.trainers.callbacks.save_predictions import SavePredictionsCallback
from regimen.trainers.callbacks.should_validate import ShouldValidateCallback
from regimen.trainers.callbacks.tensorboard import TensorBoardCallback
from regimen.trainers.callbacks.track_epoch import TrackEpochCallback
from regimen.trainers.callbacks.wandb import WandBCallback

__all__ = [
    "BatchCallback",
    "ConfidenceCheckError",
    "ConfidenceChecksCallback",
    "ConsoleLoggerCallback",
    "EpochCallback",
    "MLflowCallback",
    "MixedPrecisionBackwardCallback",
    "OnBackwardException",
    "OptunaPrunerCallback",
    "SavePredictionsCallback",
    "ShouldValidateCallback",
    "TensorBoardBatchMemoryUsage",
    "TensorBoardCallback",
    "TensorBoardMemoryUsageCallback",
    "TrackEpochCallback",
    "TrainerCallback",
    "WandBCallback",
]
