"""Trainers and their components: the loop, optimizers, schedules, moving averages, callbacks."""

from regimen.trainers.callbacks import BatchCallback, EpochCallback, TrainerCallback
from regimen.trainers.gradient_descent import GradientDescentTrainer
from regimen.trainers.lr_schedulers import LearningRateScheduler
from regimen.trainers.metric_tracker import MetricTracker
from regimen.trainers.momentum_schedulers import MomentumScheduler
from regimen.trainers.moving_average import MovingAverage
from regimen.trainers.optimizers import Optimizer
from regimen.trainers.trainer import Trainer

__all__ = [
    "BatchCallback",
    "EpochCallback",
    "GradientDescentTrainer",
    "LearningRateScheduler",
    "MetricTracker",
    "MomentumScheduler",
    "MovingAverage",
    "Optimizer",
    "Trainer",
    "TrainerCallback",
]
