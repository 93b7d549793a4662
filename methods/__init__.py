"""Training objectives, one module each. A module registers its method with
``@register_method("name")``; every module in this package is imported here, so adding a
method to this checkout is adding one file. Methods of installed distributions come from the
entry-point group ``bench.methods`` (:mod:`bench.plugins`), and ``--plugin FILE.py`` imports one
file for one command."""
import importlib
import pkgutil

from bench.registry import Registry
from methods.base import Method, contract_faults

METHODS = Registry("method", base=Method, check=contract_faults, group="bench.methods")
register_method = METHODS.register

_NOT_METHODS = {"base", "networks"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _NOT_METHODS and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
