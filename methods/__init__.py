"""Training objectives, one module each. A module registers its method with
``@register_method("name")`` (from :mod:`methods.base`, re-exported here for plugins); every module
in this package is imported here, so adding a method to this checkout is adding one file. Methods
of installed distributions come from the entry-point group ``bench.methods`` (loaded by the
registry at its first lookup), and ``--plugin FILE.py`` imports one file for one command
(:mod:`bench.plugins`)."""
import importlib
import pkgutil

from methods.base import METHODS, Method, Nets, register_method

__all__ = ["METHODS", "Method", "Nets", "register_method"]

_NOT_METHODS = {"base", "networks"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _NOT_METHODS and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
