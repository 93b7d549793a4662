"""Name -> factory registries (the timm pattern): methods, datasets and presets register
themselves, from this checkout (``builtin``), from an installed distribution's entry points
(``dist NAME==VERSION``, loaded here at the first lookup) or from a file or module named with
``--plugin`` (``file PATH``, ``module NAME``; :mod:`bench.plugins`).

An entry point that cannot be used never takes the registry down: one that fails to import, names
a class of the wrong kind, breaks the contract or takes a name already in use is kept in
:attr:`Registry.problems` under its name with the reason, and only asking for that name stops with
a :class:`BenchError`.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import re
from typing import Callable

from bench.errors import BenchError
from bench.options import validate_options

NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")  # no '.', ',', '[', '=': --set NAME.OPTION, gan[lr=...]


class Registry:
    def __init__(self, kind: str, base: type | None = None, check: Callable | None = None,
                 group: str | None = None):
        self.kind = kind
        self.base = base            # every entry must subclass it (set once the base class exists)
        self.check = check          # check(name, factory) -> list of problems, run at registration
        self.group = group          # entry-point group, loaded on first use (a plugin imports bench too)
        self._group_loaded = group is None
        self._entries: dict[str, Callable] = {}
        self._sources: dict[str, str] = {}
        self._problems: dict[str, str] = {}
        self._loading = "builtin"

    def _load_group(self) -> None:
        """The entry points of ``group``, once, at the first lookup (not at import: a plugin module
        that imports ``methods`` would otherwise be imported again half-way through its own import).
        A plugin that fails is recorded in :attr:`problems`, never raised."""
        if not self._group_loaded:
            self.load_entry_points()

    def load_entry_points(self) -> None:
        """Register every entry point of the group now (what a fresh process does at its first lookup)."""
        self._group_loaded = True
        try:
            found = importlib.metadata.entry_points(group=self.group)
        except Exception as err:  # noqa: BLE001 (a broken installed metadata file must not stop bench)
            self._problems[f"<{self.group}>"] = f"cannot read the entry points of {self.group}: {err}"
            return
        for ep in found:
            dist = getattr(ep, "dist", None)
            source = f"dist {dist.name}=={dist.version}" if dist is not None else f"entry point {ep.value}"
            where = f"{source}, entry point {ep.name} = {ep.value} (group {self.group})"
            before = set(self._entries)
            try:
                with self.loading(source):
                    factory = ep.load()
                self.add(ep.name, factory, source)
            except BenchError as err:
                self._forget(set(self._entries) - before)  # whatever it registered before failing
                self._problems[ep.name] = f"{self.kind} {ep.name!r} cannot be used: {self._reason(err)} [{where}]"
            except Exception as err:  # noqa: BLE001 (any import failure is that plugin's problem)
                self._forget(set(self._entries) - before)
                self._problems[ep.name] = (f"{self.kind} {ep.name!r} cannot be used: its entry point failed to "
                                           f"import: {type(err).__name__}: {err} [{where}]")

    def _reason(self, err: BenchError) -> str:
        """"method 'x' from dist ...: reason" -> "reason" (the source is named once, at the end)."""
        text = str(err)
        return text.split(": ", 1)[1] if text.startswith(f"{self.kind} ") and ": " in text else text

    def _forget(self, names) -> None:
        for name in names:
            self.remove(name)

    @property
    def problems(self) -> dict[str, str]:
        """Name -> why the plugin that claims it cannot be used."""
        self._load_group()
        return self._problems

    @contextlib.contextmanager
    def loading(self, source: str):
        """Entries registered inside this block come from ``source`` (``dist NAME==VERSION``, ...)."""
        before, self._loading = self._loading, source
        try:
            yield
        finally:
            self._loading = before

    def faults(self, name: str, factory) -> list[str]:
        """Why ``factory`` cannot be registered as ``name`` (empty if it can)."""
        if not isinstance(name, str) or not NAME.match(name):
            return [f"{self.kind} name {name!r} is not allowed: use lowercase letters, digits, '-' and '_' "
                    f"(it must start with a letter or digit)"]
        if self.base is not None and not (inspect.isclass(factory) and issubclass(factory, self.base)):
            what = f"class {factory.__qualname__}" if inspect.isclass(factory) else repr(factory)
            return [f"{what} is not a subclass of {self.base.__module__}.{self.base.__qualname__}"]
        return list(self.check(name, factory)) if self.check else []

    def add(self, name: str, factory, source: str | None = None):
        """Register ``factory`` as ``name``; raises BenchError naming the source and the reason."""
        source = source or self._loading
        faults = self.faults(name, factory)
        if faults:
            raise BenchError(f"{self.kind} {name!r} from {source}: " + "; ".join(faults))
        if name in self._entries and self._entries[name] is not factory:
            raise BenchError(f"{self.kind} {name!r} from {source}: the name is taken by {self._sources[name]} "
                             f"({self._entries[name].__module__}.{self._entries[name].__qualname__}); rename one")
        self._entries[name] = factory
        self._sources.setdefault(name, source)
        factory.registered_name = name
        return factory

    def register(self, name: str):
        """Class decorator: ``@METHODS.register("gan")``. The docstring's first line describes it."""
        def wrap(factory):
            return self.add(name, factory)
        return wrap

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)
        self._sources.pop(name, None)

    @contextlib.contextmanager
    def temporarily(self, name: str, factory, source: str = "test"):
        """``factory`` registered as ``name`` inside the block only (the conformance check's way)."""
        self.add(name, factory, source)
        try:
            yield name
        finally:
            self.remove(name)

    def names(self) -> list[str]:
        self._load_group()
        return list(self._entries)

    def source(self, name: str) -> str:
        """Where an entry comes from: builtin, dist NAME==VERSION, file PATH or module NAME."""
        self._load_group()
        return self._sources.get(name, "builtin")

    def describe(self) -> dict[str, str]:
        self._load_group()
        return {name: (inspect.getdoc(f) or "").splitlines()[0] if inspect.getdoc(f) else ""
                for name, f in self._entries.items()}

    def defaults(self, name: str) -> dict:
        """The constructor's default options of entry ``name``."""
        return {key: p.default for key, p in inspect.signature(self.get(name)).parameters.items()
                if key != "self" and p.default is not inspect.Parameter.empty}

    def get(self, name: str):
        self._load_group()
        if name in self.problems:
            raise BenchError(self.problems[name])
        if name not in self._entries:
            raise BenchError(f"unknown {self.kind} {name!r}; choose from: {', '.join(self.names())}")
        return self._entries[name]

    def validate(self, name: str, options: dict) -> dict:
        """The options checked against the constructor's keyword arguments (names) and the
        entry's declared ``constraints`` (values, see :mod:`bench.options`), normalised."""
        factory = self.get(name)
        allowed = [p for p in inspect.signature(factory).parameters if p != "self"]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise BenchError(f"{self.kind} {name!r} has no option {', '.join(unknown)}; "
                             f"its options are: {', '.join(allowed) or '(none)'}")
        return validate_options(name, getattr(factory, "constraints", None), options)

    def create(self, name: str, **options):
        """Build an entry from validated options; the class's own cross-option checks (ValueError)
        become BenchError too."""
        options = self.validate(name, options)
        factory = self.get(name)
        try:
            return factory(**options)
        except (TypeError, ValueError) as err:
            raise BenchError(f"{self.kind} {name!r}: {err}") from err

    def parse(self, names: str) -> list[str]:
        """Comma-separated names -> validated list (order kept, duplicates dropped)."""
        chosen = list(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
        if not chosen:
            raise BenchError(f"no {self.kind} given; choose from: {', '.join(self.names())}")
        for n in chosen:
            self.get(n)
        return chosen
