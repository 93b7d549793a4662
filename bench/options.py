"""Option constraints as data, and the one validator that reads them (scikit-learn's parameter
validation, ``sklearn/utils/_param_validation.py``).

A method or dataset class declares, beside its ``__init__``::

    constraints = {"d_steps": Integer(min=1), "kernel": Choice("gaussian", "laplacian", "energy")}

and :func:`validate_options` checks and normalises a dict of options against it before the class
is built. A value is either a Python value (from code, presets, study files, JSON records) or text
from the command line (``--set gan.d_steps=2``); the declared constraint decides how text is read:

=============  ==========================================  ===============================
constraint      Python values accepted                      text accepted
=============  ==========================================  ===============================
``Integer``     int (not bool; 2.0 is not an integer)       ``2``, ``-3`` (``2.5``, ``2.0``: rejected)
``Real``        int or float, finite                        ``0.5``, ``1e-3``, ``2``
``Choice``      one of the listed strings                   the same words
``Boolean``     True or False                               ``true``/``false``, ``1``/``0`` (any case)
``Floats``      a tuple or list of reals, or one real       ``-1,2``, ``[1, 2]``, ``(1,2)``, ``3``
``Text``        str or os.PathLike                          any text
``Optional``    None, or what the inner constraint takes    ``none`` (any case), or the inner's text
=============  ==========================================  ===============================

Values are normalised (int, float, str, bool, tuple of floats), never truncated or coerced across
types. Every error names the owner, the option, the value given and what is allowed::

    gan option d_steps takes an integer >= 1; got '2.5'

Options a class does not declare pass through; text given for one is read as a Python literal
if it is one, else kept as the word (how ``--set`` read every option before constraints).
"""
from __future__ import annotations

import ast
import inspect
import math
import os
from numbers import Integral, Real as _RealNumber
from typing import Any, Mapping

from bench.errors import OptionError


class Reject(Exception):
    """Raised by a constraint's ``parse``; the validator turns it into one OptionError message."""


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _bounds(min_, max_, exclusive: bool) -> str:
    lo, hi = ("(", ")") if exclusive else ("[", "]")
    if min_ is not None and max_ is not None:
        return f" in {lo}{_number(min_)}, {_number(max_)}{hi}"
    if min_ is not None:
        return f" {'>' if exclusive else '>='} {_number(min_)}"
    if max_ is not None:
        return f" {'<' if exclusive else '<='} {_number(max_)}"
    return ""


def _in_bounds(x, min_, max_, exclusive: bool) -> bool:
    if min_ is not None and (x <= min_ if exclusive else x < min_):
        return False
    return not (max_ is not None and (x >= max_ if exclusive else x > max_))


class Constraint:
    """What one option accepts. ``parse`` returns the normalised value or raises ``Reject``."""

    def describe(self) -> str:
        raise NotImplementedError

    def parse(self, value: Any) -> Any:
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.describe()!r})"


class Integer(Constraint):
    def __init__(self, min: int | None = None, max: int | None = None):
        self.min, self.max = min, max

    def describe(self):
        return "an integer" + _bounds(self.min, self.max, False)

    def parse(self, value):
        if isinstance(value, str):
            text = value.strip()
            digits = text[1:] if text[:1] in "+-" else text
            if not digits.isdigit() or not digits.isascii():
                raise Reject
            value = int(text)
        elif isinstance(value, bool) or not isinstance(value, Integral):
            raise Reject
        value = int(value)
        if not _in_bounds(value, self.min, self.max, False):
            raise Reject
        return value


class Real(Constraint):
    """A finite real number; ``exclusive`` excludes the bounds themselves (``Real(min=0, exclusive=True)``: > 0)."""

    def __init__(self, min: float | None = None, max: float | None = None, exclusive: bool = False):
        self.min, self.max, self.exclusive = min, max, exclusive

    def describe(self):
        return "a real number" + _bounds(self.min, self.max, self.exclusive)

    def parse(self, value):
        value = _real(value)
        if not _in_bounds(value, self.min, self.max, self.exclusive):
            raise Reject
        return value


def _real(value, text_ok: bool = True) -> float:
    """One finite real number, from a Python number (not bool) or, if ``text_ok``, its text."""
    if isinstance(value, str) and text_ok:
        try:
            value = float(value.strip())
        except ValueError:
            raise Reject from None
    elif isinstance(value, bool) or not isinstance(value, _RealNumber):
        raise Reject
    value = float(value)
    if not math.isfinite(value):
        raise Reject
    return value


class Choice(Constraint):
    def __init__(self, *values: str):
        self.values = values

    def describe(self):
        return "one of " + ", ".join(self.values)

    def parse(self, value):
        if isinstance(value, str) and value.strip() in self.values:
            return value.strip()
        raise Reject


class Boolean(Constraint):
    TRUE, FALSE = ("true", "1"), ("false", "0")

    def describe(self):
        return "true or false (or 1, 0)"

    def parse(self, value):
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            word = value.strip().lower()
            if word in self.TRUE:
                return True
            if word in self.FALSE:
                return False
        raise Reject


class Floats(Constraint):
    """A tuple of finite reals: ``Floats(min_len=1, positive=True)``. Text: comma-separated, with
    or without brackets or parentheses; one number is a tuple of one."""

    def __init__(self, min_len: int = 1, positive: bool = False):
        self.min_len, self.positive = min_len, positive

    def describe(self):
        count = "one or more" if self.min_len == 1 else f"at least {self.min_len}"
        return f"{count} {'positive ' if self.positive else ''}real numbers, comma-separated (e.g. 1,0.5)"

    def parse(self, value):
        if isinstance(value, str):
            text = value.strip()
            if text[:1] + text[-1:] in ("[]", "()"):
                text = text[1:-1]
            items = text.split(",")
            if items and not items[-1].strip() and len(items) > 1:  # "(1,)": Python's one-tuple
                items.pop()
            if any(not t.strip() for t in items):
                raise Reject
            values = tuple(_real(t) for t in items)
        elif isinstance(value, (tuple, list)):
            values = tuple(_real(v, text_ok=False) for v in value)
        else:
            values = (_real(value, text_ok=False),)
        if len(values) < self.min_len or (self.positive and min(values, default=1) <= 0):
            raise Reject
        return values


class Text(Constraint):
    def describe(self):
        return "a text"

    def parse(self, value):
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        raise Reject


class Optional(Constraint):
    """None (text: ``none``, any case) or what ``inner`` accepts."""

    def __init__(self, inner: Constraint):
        self.inner = inner

    def describe(self):
        return f"{self.inner.describe()}, or none"

    def parse(self, value):
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            return None
        return self.inner.parse(value)


def _literal_or_word(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def validate_options(owner: str, constraints: Mapping[str, Constraint] | None,
                     options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``constraints`` and normalised, in the same order.

    ``owner`` names the method or dataset in messages (``gan option d_steps takes ...``). Raises
    :class:`OptionError` for the first value its constraint rejects. Options without a declared
    constraint pass through (text read as a Python literal if it is one); their names are checked
    by the caller against the constructor."""
    constraints = constraints or {}
    out = {}
    for name, value in options.items():
        constraint = constraints.get(name)
        if constraint is None:
            out[name] = _literal_or_word(value) if isinstance(value, str) else value
            continue
        try:
            out[name] = constraint.parse(value)
        except (Reject, ValueError, TypeError, OverflowError):
            raise OptionError(f"{owner} option {name} takes {constraint.describe()}; got {value!r}") from None
    return out


def option_faults(cls) -> list[str]:
    """What is wrong with how a class declares its options (empty if nothing): every ``__init__``
    argument is a keyword with a default, ``constraints`` names only those arguments, and every
    default is a value its constraint accepts. Checked when a plugin registers."""
    try:
        params = [p for name, p in inspect.signature(cls).parameters.items() if name != "self"]
    except (TypeError, ValueError) as err:
        return [f"its constructor's signature cannot be read ({err})"]
    faults = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            faults.append(f"__init__ takes *{p.name}: options must be named keyword arguments")
        elif p.default is p.empty:
            faults.append(f"option {p.name} has no default: every option needs one")
    names = {p.name for p in params}
    constraints = getattr(cls, "constraints", None) or {}
    if not isinstance(constraints, Mapping):
        return faults + [f"constraints must be a dict of option name -> constraint; got {constraints!r}"]
    # a subclass that drops a base's option may keep (inherit or copy) its constraint: unused, harmless
    inherited = {k for base in cls.__mro__[1:] for k in (vars(base).get("constraints") or {})}
    for name, constraint in constraints.items():
        if name not in names:
            if name not in inherited:
                faults.append(f"constraints name {name!r}, which is not an argument of __init__")
        elif not isinstance(constraint, Constraint):
            faults.append(f"constraints[{name!r}] is {constraint!r}, not a bench.options constraint")
        else:
            default = next(p.default for p in params if p.name == name)
            if default is not inspect.Parameter.empty:
                try:
                    constraint.parse(default)
                except (Reject, ValueError, TypeError, OverflowError):
                    faults.append(f"the default of option {name} ({default!r}) is not {constraint.describe()}")
    return faults
