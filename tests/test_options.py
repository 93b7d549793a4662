"""Option values: declared constraints (bench.options), one validator, its messages; every bad
value the hardening issue found is stopped before anything is built, trained or written."""
import json
import math

import pytest
from hypothesis import given, strategies as st

from bench.cli import main
from bench.datasets import DATASETS
from bench.options import (Boolean, Choice, Floats, Integer, Optional, OptionError, Real, Text,
                           validate_options)
from bench.errors import BenchError
from bench.registry import Registry
from methods import METHODS
from methods.base import Method

TINY = ["--steps", "4", "--eval-points", "1", "--batch-size", "32", "--no-progress", "--device", "cpu"]


# ------------------------------------------------------------- through the command line
@pytest.mark.parametrize("setting,message", [
    ("gmn.bandwidths=-1,2", "gmn option bandwidths takes one or more positive real numbers"),
    ("gmn.backend=geomloss", "backend=geomloss computes the biased estimator only; add estimator=biased"),
    ("gmn.root=maybe", "gmn option root takes true or false (or 1, 0); got 'maybe'"),
    ("gan.d_steps=2.5", "gan option d_steps takes an integer >= 1; got '2.5'"),
    ("gan.d_steps=abc", "gan option d_steps takes an integer >= 1; got 'abc'"),
    ("ring8.std=-0.1", "ring8 option std takes a real number > 0; got '-0.1'"),
])
def test_bad_option_value_exits_2_names_option_and_allowed_values_and_writes_nothing(tmp_path, capsys,
                                                                                    setting, message):
    out = tmp_path / "res"
    assert main(["run", "--methods", "gmn,gan", "--datasets", "ring8", "--set", setting,
                 "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_command_line_text_is_read_by_declared_type_and_recorded_typed(tmp_path):
    out = tmp_path / "res"
    assert main(["run", "--methods", "gmn,gan", "--datasets", "ring8", "--out", str(out), *TINY,
                 "--set", "gmn.root=false", "--set", "gmn.bandwidths=[0.5, 1]", "--set", "gan.d_steps=2",
                 "--set", "ring8.modes=4"]) == 0
    gmn = json.loads(next(out.glob("runs/ring8/gmn/seed0-*/record.json")).read_text())
    assert gmn["method_settings"]["root"] is False and gmn["method_settings"]["bandwidths"] == [0.5, 1.0]
    assert gmn["spec"]["method_options"]["root"] is False
    assert gmn["spec"]["method_overrides"] == {"bandwidths": [0.5, 1.0]}  # root=false is the default
    assert gmn["spec"]["dataset_options"]["modes"] == 4 and gmn["spec"]["run_overrides"]["ring8.modes"] == 4
    gan = json.loads(next(out.glob("runs/ring8/gan/seed0-*/record.json")).read_text())
    assert gan["method_settings"]["d_steps"] == 2 and gan["spec"]["method_options"]["d_steps"] == 2


# ---------------------------------------------------------------- through the registry
@pytest.mark.parametrize("options,message", [
    ({"bandwidths": "-1,2"}, "gmn option bandwidths takes one or more positive real numbers, comma-separated "
                             "\\(e.g. 1,0.5\\), or none; got '-1,2'"),
    ({"bandwidths": "[-1]"}, "gmn option bandwidths takes .*; got '\\[-1\\]'"),
    ({"bandwidth_factors": "[-1]"}, "gmn option bandwidth_factors takes one or more positive real numbers"),
    ({"bandwidth_factors": [1, -0.5]}, "gmn option bandwidth_factors takes .*; got \\[1, -0.5\\]"),
    ({"bandwidths": "-1"}, "gmn option bandwidths takes .*; got '-1'"),
    ({"bandwidths": -1}, "gmn option bandwidths takes .*; got -1$"),
    ({"bandwidths": "[]"}, "gmn option bandwidths takes"),
    ({"bandwidths": "1,,2"}, "gmn option bandwidths takes"),
    ({"bandwidths": "1,nan"}, "gmn option bandwidths takes"),
    ({"bandwidths": ["1", "2"]}, "gmn option bandwidths takes"),  # Python values must be numbers
    ({"backend": "geomloss"}, "method 'gmn': backend=geomloss computes the biased estimator only; add estimator=biased"),
    ({"root": "true"}, "root=true needs estimator=biased"),
    ({"root": "maybe"}, "gmn option root takes true or false \\(or 1, 0\\); got 'maybe'"),
    ({"root": "yes"}, "gmn option root takes"),
    ({"root": 1}, "gmn option root takes .*; got 1$"),
    ({"kernel": "rbf"}, "gmn option kernel takes one of gaussian, laplacian, energy; got 'rbf'"),
    ({"code_space": "latent"}, "gmn option code_space takes one of pixels, autoencoder; got 'latent'"),
])
def test_gmn_rejects_bad_values_before_building(options, message):
    with pytest.raises(BenchError, match=message):
        METHODS.create("gmn", **options)


@pytest.mark.parametrize("value", ["abc", "2.5", "2.0", "0", "-1", "", 2.5, 2.0, 0, True, None, "1e3"])
@pytest.mark.parametrize("name", ["gan", "nsgan"])
def test_d_steps_takes_positive_integers_only_never_truncated(name, value):
    with pytest.raises(BenchError, match=f"^{name} option d_steps takes an integer >= 1; got "):
        METHODS.create(name, d_steps=value)


@pytest.mark.parametrize("options,expected", [
    ({"root": "false"}, {"root": False}),
    ({"root": "FALSE", "estimator": "biased"}, {"root": False, "estimator": "biased"}),
    ({"root": "0"}, {"root": False}),
    ({"root": "true", "estimator": "biased"}, {"root": True, "estimator": "biased"}),
    ({"root": "1", "estimator": "biased"}, {"root": True, "estimator": "biased"}),
    ({"root": True, "estimator": "biased"}, {"root": True, "estimator": "biased"}),
    ({"bandwidths": "1e-1,2"}, {"bandwidths": (0.1, 2.0)}),
    ({"bandwidths": "[1, 2]"}, {"bandwidths": (1.0, 2.0)}),
    ({"bandwidths": "(1,2)"}, {"bandwidths": (1.0, 2.0)}),
    ({"bandwidths": "(1,)"}, {"bandwidths": (1.0,)}),
    ({"bandwidths": "3"}, {"bandwidths": (3.0,)}),
    ({"bandwidths": 3}, {"bandwidths": (3.0,)}),
    ({"bandwidths": "none"}, {"bandwidths": None}),
    ({"bandwidths": None}, {"bandwidths": None}),
    ({"bandwidth_factors": [1, 0.5]}, {"bandwidth_factors": (1.0, 0.5)}),
    ({"backend": "geomloss", "estimator": "biased"}, {"backend": "geomloss", "estimator": "biased"}),
])
def test_gmn_values_are_normalised_to_their_declared_type(options, expected):
    method = METHODS.create("gmn", **options)
    for name, value in expected.items():
        assert getattr(method, name) == value and type(getattr(method, name)) is type(value)


def test_gan_d_steps_from_text_is_an_int():
    assert METHODS.create("gan", d_steps="3").d_steps == 3
    assert METHODS.create("nsgan", d_steps=" 2 ").d_steps == 2


@pytest.mark.parametrize("name,options,message", [
    ("ring8", {"modes": "2.5"}, "ring8 option modes takes an integer >= 1; got '2.5'"),
    ("ring8", {"modes": 0}, "ring8 option modes takes an integer >= 1; got 0"),
    ("ring8", {"radius": "0"}, "ring8 option radius takes a real number > 0; got '0'"),
    ("ring8", {"std": -0.01}, "ring8 option std takes a real number > 0; got -0.01"),
    ("ring8", {"n_std": "inf"}, "ring8 option n_std takes a real number > 0; got 'inf'"),
    ("grid25", {"side": "five"}, "grid25 option side takes an integer >= 1; got 'five'"),
    ("grid25", {"spacing": "-2"}, "grid25 option spacing takes a real number > 0; got '-2'"),
    ("gauss1d", {"mean": "nan"}, "gauss1d option mean takes a real number; got 'nan'"),
    ("gauss1d", {"std": "0"}, "gauss1d option std takes a real number > 0"),
    ("mix1d", {"separation": 0}, "mix1d option separation takes a real number > 0; got 0"),
    ("mnist", {"digits_min_share": "1.5"}, "mnist option digits_min_share takes a real number in \\[0, 1\\]; got '1.5'"),
    ("mnist", {"data_dir": 3}, "mnist option data_dir takes a text, or none; got 3"),
])
def test_dataset_options_are_checked_against_their_constraints(name, options, message):
    with pytest.raises(BenchError, match=f"^{message}"):
        DATASETS.validate(name, options)  # validate: mnist's constructor would load the data


def test_dataset_values_are_normalised():
    assert DATASETS.validate("ring8", {"modes": "4", "radius": "2", "std": 1}) == {"modes": 4, "radius": 2.0, "std": 1.0}
    assert DATASETS.validate("mnist", {"data_dir": "none", "digits_min_share": "0"}) == {
        "data_dir": None, "digits_min_share": 0.0}
    assert len(DATASETS.create("ring8", modes="4").means) == 4


BAD = {Integer: "2.5", Real: "abc", Choice: "no-such-choice", Boolean: "maybe", Floats: "x", Text: 3}


def _bad_value(constraint):
    return _bad_value(constraint.inner) if isinstance(constraint, Optional) else BAD[type(constraint)]


@pytest.mark.parametrize("registry,name", [(METHODS, n) for n in METHODS.names()] +
                         [(DATASETS, n) for n in DATASETS.names()])
def test_every_declared_option_rejects_a_bad_value_naming_owner_option_and_value(registry, name):
    """scikit-learn's check_param_validation: one generated bad value per declared option."""
    constraints = registry.get(name).constraints
    assert constraints, f"{name} declares no constraints"
    for option, constraint in constraints.items():
        bad = _bad_value(constraint)
        with pytest.raises(BenchError) as err:
            registry.validate(name, {option: bad})
        assert str(err.value) == f"{name} option {option} takes {constraint.describe()}; got {bad!r}"


def test_declared_options_are_constructor_arguments():
    import inspect
    for registry in (METHODS, DATASETS):
        for name in registry.names():
            cls = registry.get(name)
            assert set(cls.constraints) == set(inspect.signature(cls).parameters) - {"self"}, name


def test_plugin_without_constraints_gets_its_options_as_before():
    plugins = Registry("method")

    @plugins.register("plain")
    class Plain(Method):
        def __init__(self, k=1, word="a", sizes=(1,)):
            self.k, self.word, self.sizes = k, word, sizes

    plain = plugins.create("plain", k="2", word="energy", sizes="(3, 4)")  # text as from --set
    assert (plain.k, plain.word, plain.sizes) == (2, "energy", (3, 4))
    assert plugins.create("plain", k=2.5).k == 2.5  # Python values untouched
    with pytest.raises(BenchError, match="has no option z"):
        plugins.create("plain", z=1)


# ------------------------------------------------------------------ the parser, by property
def _parse(constraint, value):
    return validate_options("m", {"x": constraint}, {"x": value})["x"]


@given(st.integers(min_value=1, max_value=10 ** 30), st.sampled_from(["{}", " {} ", "+{}"]))
def test_integer_text_round_trips(v, form):
    assert _parse(Integer(min=1), form.format(v)) == v
    assert _parse(Integer(min=1), v) == v


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()))
def test_non_integral_float_text_is_never_an_integer(f):
    for text in (repr(f), str(f), f"{f:.3f}", f"{f:e}"):
        with pytest.raises(OptionError, match="takes an integer"):
            _parse(Integer(), text)
    with pytest.raises(OptionError):
        _parse(Integer(), f)


@given(st.integers(min_value=-10 ** 6, max_value=10 ** 6))
def test_integral_float_is_not_an_integer_either(v):
    """2.0 is a float: an option of integer type takes integers only, from text and from code."""
    for value in (f"{v}.0", float(v), f"{v}e0"):
        with pytest.raises(OptionError):
            _parse(Integer(), value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_real_text_round_trips(v):
    assert _parse(Real(), repr(v)) == v and _parse(Real(), str(v)) == v and _parse(Real(), v) == v


@given(st.floats(min_value=0, exclude_min=False))
def test_real_bounds_are_kept(v):
    if v == 0 or math.isinf(v):
        with pytest.raises(OptionError):
            _parse(Real(min=0, exclusive=True), repr(v))
    else:
        assert _parse(Real(min=0, exclusive=True), repr(v)) == v


positive_floats = st.floats(min_value=0, exclude_min=True, allow_infinity=False)


@given(st.lists(positive_floats, min_size=1, max_size=8))
def test_floats_text_round_trips_in_every_spelling(v):
    want = tuple(v)
    c = Floats(min_len=1, positive=True)
    for text in (",".join(map(repr, v)), str(v), str(tuple(v)), "[" + ", ".join(map(str, v)) + "]",
                 " , ".join(map(repr, v))):
        assert _parse(c, text) == want, text
    assert _parse(c, v) == want and _parse(c, tuple(v)) == want


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=8))
def test_floats_with_a_non_positive_value_are_rejected(v):
    c = Floats(min_len=1, positive=True)
    if min(v) <= 0:
        with pytest.raises(OptionError):
            _parse(c, ",".join(map(repr, v)))
    else:
        assert _parse(c, ",".join(map(repr, v))) == tuple(v)


@given(st.booleans(), st.sampled_from([str, lambda b: str(b).lower(), lambda b: str(b).upper(), lambda b: str(int(b))]))
def test_boolean_text_round_trips(b, spell):
    assert _parse(Boolean(), spell(b)) is b and _parse(Boolean(), b) is b


@given(st.one_of(st.text(max_size=8), st.sampled_from(["true", "False", "1", "0", "yes", "no", "on", "t", ""])))
def test_booleans_come_only_from_the_accepted_spellings(text):
    accepted = text.strip().lower() in ("true", "false", "1", "0")
    try:
        value = _parse(Boolean(), text)
    except OptionError as err:
        assert not accepted and str(err) == f"m option x takes true or false (or 1, 0); got {text!r}"
    else:
        assert accepted and value is (text.strip().lower() in ("true", "1"))


@given(st.text(max_size=12))
def test_choice_takes_its_words_only(text):
    c = Choice("gaussian", "laplacian", "energy")
    if text.strip() in c.values:
        assert _parse(c, text) == text.strip()
    else:
        with pytest.raises(OptionError, match="takes one of gaussian, laplacian, energy; got "):
            _parse(c, text)
