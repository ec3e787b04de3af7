"""Momentum schedulers: the MomentumScheduler base and the registered "inverted_triangular" schedule."""

from regimen.trainers.momentum_schedulers.inverted_triangular import InvertedTriangular
from regimen.trainers.momentum_schedulers.momentum_scheduler import MomentumScheduler

__all__ = ["InvertedTriangular", "MomentumScheduler"]
