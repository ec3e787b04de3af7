"""Trainer callbacks: the TrainerCallback base, AllenNLP 1.x batch/epoch callbacks and the built-ins."""

from regimen.trainers.callbacks.callback import BatchCallback, EpochCallback, TrainerCallback
from regimen.trainers.callbacks.confidence_checks import ConfidenceCheckError, ConfidenceChecksCallback
from regimen.trainers.callbacks.console_logger import ConsoleLoggerCallback
from regimen.trainers.callbacks.memory_usage import TensorBoardMemoryUsageCallback
from regimen.trainers.callbacks.save_predictions import SavePredictionsCallback
from regimen.trainers.callbacks.tensorboard import TensorBoardCallback
from regimen.trainers.callbacks.track_epoch import TrackEpochCallback

__all__ = [
    "BatchCallback",
    "ConfidenceCheckError",
    "ConfidenceChecksCallback",
    "ConsoleLoggerCallback",
    "EpochCallback",
    "SavePredictionsCallback",
    "TensorBoardCallback",
    "TensorBoardMemoryUsageCallback",
    "TrackEpochCallback",
    "TrainerCallback",
]
