"""regimen: train PyTorch models from Jsonnet experiment files."""

from regimen.registry import ConfigurationError, FromParams, Lazy, Params, Registrable

__version__ = "0.1.0"

__all__ = ["ConfigurationError", "FromParams", "Lazy", "Params", "Registrable", "__version__"]
