"""Published results beside ours: the shipped data file, its loader's checks, matching a paper's
method to a bench variant, the verdicts, and the comparison in `bench report` (bench.presets.comparability
says whether a run followed its preset's protocol)."""
import math

import pytest

from bench import published, report
from bench.cli import main
from bench.errors import BenchError
from conftest import write_record

FULL = 400_000  # pacgan-toy's budget: runs with fewer steps are not comparable


def write_rows(tmp_path, text):
    path = tmp_path / "published.toml"
    path.write_text(text)
    return path


ROW = """
[[result]]
paper = "Someone et al. 2018"
table = "Table 1"
preset = "pacgan-toy"
dataset = "grid25"
label = "GAN"
method = "nsgan"
trials = 4
spread = "std"
metrics = { modes_covered = [20.0, 2.0], high_quality_pct = 90.0 }
"""


# ------------------------------------------------------------------------------ the data file
def test_the_shipped_file_parses_and_every_row_has_a_citation_and_a_known_spread():
    rows = published.load()
    assert rows and all(r.paper and r.table and r.label for r in rows)
    assert all(r.spread in published.SPREADS and r.trials >= 1 for r in rows)
    assert all(set(r.metrics) <= set(report.METRICS) | set(published.PAPER_ONLY) for r in rows)
    assert {r.dataset for r in rows} <= set(published.PUBLISHED_DATASETS)
    pacgan = {(r.dataset, r.label): r for r in rows if r.table == "Table 1" and "PacGAN" in r.paper}
    # PacGAN's GAN is non-saturating (its code's generator loss): nsgan, and PacGAN2 is nsgan with pack=2
    assert pacgan["grid25", "GAN"].method == "nsgan" and pacgan["grid25", "PacGAN2"].options == {"pack": 2}
    assert pacgan["ring8", "ALI"].method is None
    assert pacgan["grid25", "GAN"].metrics["modes_covered"] == (17.3, 0.8)


def test_the_data_file_is_package_data():
    """bench as imported here (tox installs it into site-packages) finds the file beside its modules,
    and the checkout's pyproject.toml ships it."""
    import tomllib
    from pathlib import Path
    assert published.PATH.is_file() and published.PATH.parent == Path(published.__file__).parent
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert published.PATH.name in pyproject["tool"]["setuptools"]["package-data"]["bench"]


def test_std_becomes_a_standard_error_and_se_and_none_are_kept(tmp_path):
    text = (ROW + ROW.replace('"std"', '"se"').replace('"GAN"', '"PacGAN2"').replace(
        'method = "nsgan"', 'method = "nsgan"\noptions = {pack = 2}')
        + ROW.replace('"std"', '"none"').replace("[20.0, 2.0]", "20.0").replace('"GAN"', '"ALI"')
        .replace('method = "nsgan"\n', ""))
    std, se, none = published.load(write_rows(tmp_path, text))
    assert std.se("modes_covered") == pytest.approx(2.0 / math.sqrt(4))
    assert std.se("high_quality_pct") is None  # a cell the paper gives without ±
    assert se.se("modes_covered") == 2.0 and se.options == {"pack": 2}
    assert none.se("modes_covered") is None and none.method is None


@pytest.mark.parametrize("change,message", [
    (('paper = "Someone et al. 2018"\n', ""), "missing paper"),
    (('paper = "Someone et al. 2018"', 'paper = ""'), "paper must be a non-empty string"),
    (("trials = 4", "trials = 0"), "trials must be an integer >= 1"),
    (("trials = 4", "trials = 2.5"), "trials must be an integer >= 1"),
    (('spread = "std"', 'spread = "sd"'), "spread must be one of std, se, none"),
    (("modes_covered =", "modes ="), "metric 'modes' is neither bench's"),
    (("[20.0, 2.0]", "[20.0, -2.0]"), "is negative"),
    (("[20.0, 2.0]", '"twenty"'), "takes a number or [value, ±]"),
    (('spread = "std"', 'spread = "none"'), "in a row whose spread is none"),
    (('dataset = "grid25"', 'dataset = "grid-25"'), "dataset 'grid-25' is not one of"),
    (('method = "nsgan"', 'method = "wgan"'), "unknown method 'wgan'"),
    (('method = "nsgan"', 'method = "nsgan"\noptions = {packing = 2}'), "has no option packing"),
    (('method = "nsgan"', 'method = "nsgan"\noptions = {lr = -1.0}'), "nsgan option lr takes a real number > 0"),
    (('method = "nsgan"', 'method = "nsgan"\nreading = "theirs"'), "this row has no options"),
    (('method = "nsgan"', 'methd = "nsgan"'), "unknown key methd"),
    (('method = "nsgan"', 'options = {pack = 2}'), "options without a method"),
    (("metrics = {", "metrics = 3 #"), "metrics must be a non-empty table"),
])
def test_a_malformed_file_is_a_bench_error_naming_the_row(tmp_path, change, message):
    path = write_rows(tmp_path, ROW + ROW.replace('"GAN"', '"GAN, again"').replace(*change))
    with pytest.raises(BenchError, match="row 2") as err:
        published.load(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_unreadable_and_repeated_rows_are_bench_errors(tmp_path):
    with pytest.raises(BenchError, match="not valid TOML"):
        published.load(write_rows(tmp_path, "[[result]\n"))
    with pytest.raises(BenchError, match="row 2 .* repeats row 1"):
        published.load(write_rows(tmp_path, ROW + ROW))
    with pytest.raises(BenchError, match=r"\[\[result\]\] rows only"):
        published.load(write_rows(tmp_path, "results = 1\n"))
    with pytest.raises(BenchError, match="cannot be read"):
        published.load(tmp_path / "missing.toml")


# --------------------------------------------------------------------------------- matching
def test_a_variant_matches_a_row_by_method_and_options_and_nothing_else_changed(tmp_path):
    from bench import spec as specs
    gan, pac2 = published.load(write_rows(tmp_path, ROW + ROW.replace('"GAN"', '"PacGAN2"').replace(
        'method = "nsgan"', 'method = "nsgan"\noptions = {pack = 2}')))

    def spec(method="nsgan", **options):
        return specs.resolve(method, "grid25", 0, method_options=options).to_dict()
    assert published.matches(gan, spec()) and published.matches(gan, spec(pack=1))  # pack=1: no packing
    assert published.matches(pac2, spec(pack=2))
    assert not published.matches(pac2, spec()) and not published.matches(pac2, spec(pack=4))
    assert not published.matches(gan, spec(pack=2))           # an option the row does not name
    assert not published.matches(gan, spec(d_steps=2))
    assert not published.matches(gan, spec("gan"))             # minimax is not the paper's non-saturating GAN
    assert not published.matches(pac2, spec(d_steps=2, pack=2))


def test_a_row_can_read_unpublished_settings_as_optimiser_keys_and_they_are_its_protocol(tmp_path):
    """GDPP's WGAN-GP row, read as WGAN-GP's own recipe: it matches the runs that used exactly those
    settings, however they were given, and with a reading they are its protocol, not departures."""
    from bench import presets
    from bench import spec as specs
    recipe_row = ROW.replace('"GAN"', '"WGAN-GP, recipe"').replace(
        'method = "nsgan"', 'method = "wgan-gp"\noptions = {d_steps = 5, lr = 1e-4, betas = [0.5, 0.9]}\n'
                            'reading = "its authors\' recipe"')
    plain, recipe = published.load(write_rows(tmp_path, (ROW + recipe_row).replace('"nsgan"', '"wgan-gp"')
                                              .replace("pacgan-toy", "gdpp-toy")))

    def spec(run=None, **options):
        return specs.resolve("wgan-gp", "grid25", 0, profile="gdpp-toy", method_options=options, **(run or {})).to_dict()
    read_so = spec(d_steps=5, lr=1e-4, betas=(0.5, 0.9))
    assert published.matches(recipe, read_so) and not published.matches(plain, read_so)
    assert published.matches(plain, spec()) and not published.matches(recipe, spec())
    same_run = spec(d_steps=5, lr_g=1e-4, lr_d=1e-4, betas=(0.5, 0.9))   # each network's lr named apart
    assert same_run["optimizers"] == read_so["optimizers"] and published.matches(recipe, same_run)
    assert not published.matches(recipe, spec(d_steps=5, lr=1e-4))                      # betas at the preset's
    assert not published.matches(recipe, spec(d_steps=5, lr=1e-4, betas=(0.5, 0.99)))
    assert not published.matches(recipe, spec(d_steps=5, lr=1e-4, lr_d=1e-3, betas=(0.5, 0.9)))
    assert not published.matches(recipe, spec(d_steps=5, lr=1e-4, betas=(0.5, 0.9), gp_weight=1.0))
    stored = presets.comparability(read_so)
    assert stored == (False, "method options changed: betas, d_steps, lr")
    assert published.protocol(recipe, read_so, stored) == (True, "follows the paper's protocol")
    assert published.protocol(recipe, same_run, presets.comparability(same_run))[0]
    via_run = spec({"lr": 1e-4}, d_steps=5, betas=(0.5, 0.9))   # --lr 1e-4 rather than --set wgan-gp.lr=1e-4
    assert published.matches(recipe, via_run) and published.protocol(recipe, via_run, presets.comparability(via_run))[0]
    assert presets.comparability(via_run) == (False, "settings changed: lr=0.0001; method options changed: betas, d_steps")
    shorter = spec({"steps": 100}, d_steps=5, lr=1e-4, betas=(0.5, 0.9))   # a reading excuses settings, not budget
    assert published.protocol(recipe, shorter, presets.comparability(shorter))[0] is False
    assert published.run_protocol(read_so, [plain, recipe]) == (True, "follows the paper's protocol")
    assert published.run_protocol(spec(d_steps=2), [plain, recipe]) == (False, "method options changed: d_steps")


def test_a_row_without_a_reading_keeps_its_runs_stored_verdict():
    """GMMN+AE names its option (code_space), but bench's autoencoder is not the paper's: no reading,
    so the run stays not comparable."""
    from bench import presets
    from bench import spec as specs
    (row,) = [r for r in published.load() if r.method == "gmn" and r.options.get("code_space") == "autoencoder"]
    assert not row.reading
    run = specs.resolve("gmn", row.dataset, 0, row.preset, method_options=dict(row.options)).to_dict()
    assert published.matches(row, run)
    stored = presets.comparability(run)
    assert stored[0] is False and published.protocol(row, run, stored) == stored


# ---------------------------------------------------------------------------------- verdicts
def test_verdicts_in_words():
    assert published.verdict(10.0, 1.0, 11.0, 0.5).startswith("agrees (|Δ| = 1 ≤ 2 combined SE = 2.24)")
    assert published.verdict(10.0, 1.0, 14.0, 0.5) == "differs: ours higher by 4 (> 2 combined SE = 2.24)"
    assert published.verdict(10.0, 1.0, 6.0, 0.5).startswith("differs: ours lower by 4")
    # what a missing spread implies is said
    assert published.verdict(10.0, None, 10.5, 0.5) == \
        "agrees (|Δ| = 0.5 ≤ 2 combined SE = 1); published spread unknown: compared against our SE only"
    assert "one seed: our spread unknown, compared against the published SE only" in \
        published.verdict(10.0, 1.0, 13.0, math.nan)
    assert "published ± 0: the combined SE is ours alone" in published.verdict(1000.0, 0.0, 990.0, 2.0)
    assert published.verdict(8.0, 0.0, 8.0, 0.0) == "agrees (equal, no spread on either side)"
    assert published.verdict(10.0, None, 12.0, None).startswith("cannot judge: neither spread is known")
    # a paper without ±: the published mean inside or outside our 95 % t-interval, with at least 5 seeds
    assert published.verdict(10.0, None, 10.5, 0.5, seeds=5) == \
        "agrees (the published mean inside our 95 % interval [9.11, 11.9] over 5 seeds; the paper gives no ±)"
    assert published.verdict(10.0, None, 12.0, 0.5, seeds=5).startswith("differs: ours higher by 2 (the published "
                                                                        "mean outside our 95 % interval [10.6, 13.4]")
    assert published.verdict(10.0, None, 10.5, 0.5, seeds=3).startswith("cannot judge: the paper gives no ±, and 3")


def write_study(out):
    """grid25 under the pacgan-toy preset: GAN (nsgan) at the paper's budget, three seeds; PacGAN2
    (nsgan pack=2) at a reduced one; nsgan with d_steps=2, which is no paper's variant. ring8 under
    the quick profile, which has no published rows."""
    for seed, (modes, hq) in enumerate([(17.0, 60.0), (18.0, 62.0), (17.5, 61.0)]):
        final = {"modes_covered": modes, "high_quality_pct": hq, "kl_modes": 0.7 + seed / 100, "mmd2": 0.01 * seed}
        other = {"modes_covered": 20.0 + seed, "high_quality_pct": 50.0 - seed, "kl_modes": 0.3 / (1 + seed),
                 "mmd2": 0.1 + seed}
        write_record(out, "nsgan", "grid25", seed, final, profile="pacgan-toy", steps=FULL)
        write_record(out, "nsgan", "grid25", seed, {**final, "modes_covered": 20.0}, profile="pacgan-toy",
                     method_options={"pack": 2})
        write_record(out, "nsgan", "grid25", seed, other, profile="pacgan-toy", method_options={"d_steps": 2},
                     steps=FULL)
        write_record(out, "gan", "ring8", seed, final)


def test_report_sets_published_rows_beside_the_runs_of_their_preset(tmp_path, capsys):
    out = tmp_path / "res"
    write_study(out)
    assert main(["report", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    built = report.build(out, print_fn=lambda *a: None)
    beside = built.published
    assert set(beside["dataset"]) == {"grid25 · pacgan-toy"}  # ring8 · quick: no preset, no rows
    verdict = {(r.label, r.metric): r.verdict for r in beside.itertuples()}
    # GAN: modes 17.5 ± 0.29 (3 seeds) against 17.3 ± 0.8: agree; HQ 61 against 94.8: differ
    assert verdict["GAN", "modes_covered"].startswith("agrees (|Δ| = 0.2 ≤ 2 combined SE")
    assert verdict["GAN", "high_quality_pct"].startswith("differs: ours lower by 33.8 (> 2 combined SE")
    assert verdict["PacGAN2", "modes_covered"] == (  # said, and still measured: 20 against 23.8 ± 0.7
        "not comparable: steps 3,000 < the paper's 400,000 (reduced budget); as measured, differs: ours lower "
        "by 3.8 (> 2 combined SE = 1.4); our seeds all equal: the combined SE is the published one alone")
    assert verdict["PacGAN3", "modes_covered"] == "no run of this variant"
    assert verdict["ALI", "modes_covered"] == "published only, for context"
    ours = dict(zip(beside["label"], beside["variant"]))  # the report's names (steps vary in this table)
    assert ours["GAN"] == "nsgan[steps=400000]" and ours["PacGAN2"] == "nsgan[pack=2,steps=3000]"
    assert ours["PacGAN3"] == ours["ALI"] == ""
    assert not beside["variant"].str.contains("d_steps").any()  # no paper's variant
    row = beside[(beside["label"] == "GAN") & (beside["metric"] == "modes_covered")].iloc[0]
    assert row["ours"] == pytest.approx(17.5) and row["seeds"] == 3 and row["published_se"] == 0.8
    for text in (printed, (out / "summary.md").read_text()):
        assert "grid25 · pacgan-toy: published results beside ours" in text
        assert "not comparable: steps 3,000" in text and "no run of this variant" in text
        assert "17.3 ± 0.8 (10 trials)" in text and "17.5 ± 0.29 (3 seeds)" in text
        assert published.NOTE in text


def test_a_report_without_a_preset_has_no_published_section(tmp_path, capsys):
    out = tmp_path / "res"
    write_record(out, "gan", "ring8", 0, {"modes_covered": 8.0, "mmd2": 0.01})
    assert main(["report", "--out", str(out)]) == 0
    assert "published" not in capsys.readouterr().out and "published" not in (out / "summary.md").read_text()
