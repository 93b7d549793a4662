"""Name -> factory registries (the timm pattern): methods and datasets register themselves."""
from __future__ import annotations

import inspect
from typing import Callable

from bench.options import OptionError, validate_options


class BenchError(ValueError):
    """Bad input from the user: the CLI prints the message and exits with code 2."""


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable] = {}

    def register(self, name: str):
        """Class decorator: ``@METHODS.register("gan")``. The docstring's first line describes it."""
        def wrap(factory):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            factory.registered_name = name
            return factory
        return wrap

    def names(self) -> list[str]:
        return list(self._entries)

    def describe(self) -> dict[str, str]:
        return {name: (inspect.getdoc(f) or "").splitlines()[0] if inspect.getdoc(f) else ""
                for name, f in self._entries.items()}

    def get(self, name: str):
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
        try:
            return validate_options(name, getattr(factory, "constraints", None), options)
        except OptionError as err:
            raise BenchError(str(err)) from None

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
