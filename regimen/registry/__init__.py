"""The registry: Params, Registrable, FromParams, Lazy and ConfigurationError. Knows nothing of torch."""

from regimen.registry.errors import ConfigurationError
from regimen.registry.from_params import FromParams
from regimen.registry.lazy import Lazy
from regimen.registry.params import Params
from regimen.registry.plugins import import_module_and_submodules, import_plugins
from regimen.registry.registrable import Registrable

__all__ = [
    "ConfigurationError",
    "FromParams",
    "Lazy",
    "Params",
    "Registrable",
    "import_module_and_submodules",
    "import_plugins",
]
