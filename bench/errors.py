"""The errors bench raises for bad input (the ground floor: every other module may import this one)."""


class BenchError(ValueError):
    """Bad input from the user: the CLI prints the message and exits with code 2."""


class OptionError(BenchError):
    """A value an option does not take (:mod:`bench.options`); the message names the option,
    what it takes and what it got."""
