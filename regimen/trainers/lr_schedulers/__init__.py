"""Learning-rate schedulers: the LearningRateScheduler base and every registered schedule.

Importing this package registers them all: "constant", "constant_with_warmup", "linear_with_warmup",
"cosine_with_warmup", "cosine_hard_restarts_with_warmup", "polynomial_decay", "step", "multi_step",
"exponential", "reduce_on_plateau", "cosine", "noam", "slanted_triangular" and "combined".
"""

from regimen.trainers.lr_schedulers.combined import CombinedLearningRateScheduler
from regimen.trainers.lr_schedulers.cosine import CosineWithRestarts
from regimen.trainers.lr_schedulers.learning_rate_scheduler import (
    ConstantLearningRateScheduler,
    ConstantWithWarmupLearningRateScheduler,
    CosineHardRestartsWithWarmupLearningRateScheduler,
    CosineWithWarmupLearningRateScheduler,
    ExponentialLearningRateScheduler,
    LearningRateScheduler,
    MultiStepLearningRateScheduler,
    ReduceOnPlateauLearningRateScheduler,
    StepLearningRateScheduler,
)
from regimen.trainers.lr_schedulers.linear_with_warmup import LinearWithWarmup
from regimen.trainers.lr_schedulers.noam import NoamLR
from regimen.trainers.lr_schedulers.polynomial_decay import PolynomialDecay
from regimen.trainers.lr_schedulers.slanted_triangular import SlantedTriangular

__all__ = [
    "CombinedLearningRateScheduler",
    "ConstantLearningRateScheduler",
    "ConstantWithWarmupLearningRateScheduler",
    "CosineHardRestartsWithWarmupLearningRateScheduler",
    "CosineWithRestarts",
    "CosineWithWarmupLearningRateScheduler",
    "ExponentialLearningRateScheduler",
    "LearningRateScheduler",
    "LinearWithWarmup",
    "MultiStepLearningRateScheduler",
    "NoamLR",
    "PolynomialDecay",
    "ReduceOnPlateauLearningRateScheduler",
    "SlantedTriangular",
    "StepLearningRateScheduler",
]
