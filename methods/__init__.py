"""Training objectives, one module each. A module registers its method with
``@register_method("name")``; every module in this package is imported here, so adding a
method is adding one file."""
import importlib
import pkgutil

from bench.registry import Registry

METHODS = Registry("method")
register_method = METHODS.register

_NOT_METHODS = {"base", "networks"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _NOT_METHODS and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
