"""Models: the Model base class and the built-in models."""

from regimen.models.cnn_classifier import CnnClassifier
from regimen.models.mlp_classifier import MlpClassifier
from regimen.models.model import Model

__all__ = ["CnnClassifier", "MlpClassifier", "Model"]
