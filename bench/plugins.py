"""Methods and datasets from outside this checkout.

* **Entry points** (pytest's and timm's convention): an installed distribution declares, in its
  ``pyproject.toml``::

      [project.entry-points."bench.methods"]
      my-loss = "my_package.my_loss:MyLoss"

  and every bench process (the CLI, worker processes, Ray tasks) finds it at its first lookup in
  ``METHODS`` (group ``bench.datasets``: ``DATASETS``; ``bench.presets``: ``PRESETS``). The entry point's name is the method's
  name; its source is recorded as ``dist NAME==VERSION``.
* **--plugin FILE.py or MODULE**, for one command: the file is imported and whatever it registers
  with ``@register_method("name")`` (or ``@DATASETS.register``) is recorded as ``file PATH``
  (``module NAME``). Executors import the same plugins in their workers before a run.

A plugin that cannot be used never takes the registry down: an entry point that fails to import,
names a class that is not a :class:`~methods.base.Method`, breaks the contract of its options or
takes a name already in use is kept in its registry's ``problems`` under its name with the reason (:mod:`bench.registry`), and
only asking for that name (or for every method) stops with a :class:`BenchError` (exit 2).
A ``--plugin`` that fails stops the command at once.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path

from bench.datasets import DATASETS
from bench.errors import BenchError
from bench.presets import PRESETS
from methods import METHODS

_LOADED: dict[str, str] = {}  # --plugin item (resolved) -> its source
REGISTRIES = (METHODS, DATASETS, PRESETS)


def load_plugin(item: str) -> str:
    """Import one ``--plugin`` (a .py file or a module name) for this process; returns its
    source. Idempotent. Raises BenchError naming the plugin and the reason."""
    if not isinstance(item, str) or not item.strip():
        raise BenchError(f"--plugin takes a .py file or a module name; got {item!r}")
    item = item.strip()
    is_file = item.endswith(".py") or "/" in item or "\\" in item
    key = str(Path(item).resolve()) if is_file else item
    if key in _LOADED:
        return _LOADED[key]
    registries = REGISTRIES
    if is_file:
        path = Path(key)
        if not path.is_file():
            raise BenchError(f"--plugin {item}: no such file")
        source = f"file {path}"
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
        module_name = f"bench_plugin_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{digest}"
    else:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", item):
            raise BenchError(f"--plugin {item!r} is neither a .py file nor a module name")
        source, module_name = f"module {item}", item
    before = {r.kind: set(r.names()) for r in registries}
    try:
        with contextlib.ExitStack() as loading:
            for registry in registries:
                loading.enter_context(registry.loading(source))
            if is_file:
                spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module  # so that its classes pickle (worker processes)
                spec.loader.exec_module(module)
            else:
                importlib.import_module(item)
    except BenchError as err:
        _undo(registries, before, module_name)
        raise BenchError(f"--plugin {item}: {err}") from None
    except (Exception, SystemExit) as err:  # noqa: BLE001
        _undo(registries, before, module_name)
        raise BenchError(f"--plugin {item} failed to import: {type(err).__name__}: {err}") from None
    added = [n for r in registries for n in set(r.names()) - before[r.kind]]
    if not added and not any(r.source(n) == source for r in registries for n in r.names()):
        _undo(registries, before, module_name)
        raise BenchError(f"--plugin {item} registered no method or dataset: decorate a methods.base.Method "
                         f"subclass with @register_method('name') (from methods import register_method)")
    _LOADED[key] = source
    return source


def _undo(registries, before, module_name):
    for r in registries:
        for name in set(r.names()) - before[r.kind]:
            r.remove(name)
    sys.modules.pop(module_name, None)


def load_plugins(items) -> list[str]:
    """Every ``--plugin`` of a command, in order (what executors call in each worker)."""
    return [load_plugin(item) for item in (items or ())]


def problems() -> dict[str, str]:
    """Every plugin that cannot be used, by name, methods then datasets."""
    return {name: text for r in REGISTRIES for name, text in r.problems.items()}
