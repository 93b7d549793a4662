"""Ranks, omnibus tests, win/tie/loss, tables that mark the best cell, and the HTML page's reading
order: each checked against a hand computation or a constructed study whose answer is known."""
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bench import figures, report, stats
from bench.cli import main
from conftest import write_record


def test_friedman_mean_ranks_and_p_match_a_hand_computation():
    # lower is better; ranks per seed: s0 a1 b2 c3 | s1 b1 a2 c3 | s2 c1 b2 a3 | s3 a1 c2 b3
    values = {"a": {0: 1.0, 1: 2.0, 2: 3.0, 3: 1.0}, "b": {0: 2.0, 1: 1.0, 2: 2.0, 3: 3.0},
              "c": {0: 3.0, 1: 3.0, 2: 1.0, 3: 2.0}}
    t = stats.rank_test(values, "lower")
    assert t.test.startswith("Friedman") and t.n == 4
    assert t.mean_ranks == pytest.approx({"a": 7 / 4, "b": 8 / 4, "c": 9 / 4})
    # chi² = 12 / (n k (k+1)) Σ R_j² − 3 n (k+1) = 0.25 · (49 + 64 + 81) − 48 = 0.5; df 2: p = exp(−0.25)
    assert t.statistic == pytest.approx(0.5) and t.p == pytest.approx(math.exp(-0.25))
    flipped = stats.rank_test(values, "higher")  # higher is better: the ranks mirror, the test does not change
    assert flipped.mean_ranks == pytest.approx({"a": 4 - 7 / 4, "b": 2.0, "c": 4 - 9 / 4})
    assert flipped.p == pytest.approx(t.p)


def test_unpaired_seeds_rank_by_how_often_each_variant_is_beaten():
    values = {"a": {0: 1.0, 1: 2.0}, "b": {5: 3.0, 6: 4.0}, "c": {7: 1.5, 8: 3.5}}
    t = stats.rank_test(values, "lower")
    # a is beaten by c's 1.5 once in 4 pairs; b by all of a and 3 of c's 4 pairs; c by a 3/4, b 1/4
    assert t.test == "Kruskal-Wallis" and t.n == 6
    assert t.mean_ranks == pytest.approx({"a": 1.25, "b": 2.75, "c": 2.0})
    assert t.p == pytest.approx(scipy_stats.kruskal([1, 2], [3, 4], [1.5, 3.5]).pvalue)
    assert sum(t.mean_ranks.values()) == pytest.approx(1 + 2 + 3)  # ranks 1..k, shared as in a block


def test_two_variants_use_the_pairwise_test_and_all_ties_give_p_1():
    two = stats.rank_test({"a": {s: s + 1.0 for s in range(6)}, "b": {s: s + 0.5 for s in range(6)}}, "lower")
    assert two.test.startswith("Wilcoxon") and two.mean_ranks == {"a": 2.0, "b": 1.0}
    assert two.p == pytest.approx(scipy_stats.wilcoxon(np.arange(6) + 1.0, np.arange(6) + 0.5).pvalue)
    same = stats.rank_test({v: {s: 1.0 for s in range(3)} for v in "abc"}, "lower")
    assert same.p == 1.0 and same.mean_ranks == {"a": 2.0, "b": 2.0, "c": 2.0}
    assert stats.rank_test({"a": {0: 1.0, 1: 2.0}, "b": {0: 1.0}}, "lower") is None  # b: one run


def write_known_study(out, seeds=8):
    """MMD² over 8 paired seeds: gmn lowest, nsgan within ±0.0006 of it (either side), gan 50 × worse."""
    for s in range(seeds):
        base = 0.01 + 0.001 * s
        write_record(out, "gmn", "ring8", s, {"mmd2": base, "modes_covered": 8.0})
        write_record(out, "nsgan", "ring8", s, {"mmd2": base + (0.0006 if s % 2 else -0.0004), "modes_covered": 8.0})
        write_record(out, "gan", "ring8", s, {"mmd2": 0.5 + 0.01 * s, "modes_covered": 8.0})


def test_ranks_wins_and_marks_agree_with_a_study_whose_answer_is_known(tmp_path, capsys):
    out = tmp_path / "res"
    write_known_study(out)
    built = report.build(out, print_fn=print)
    printed = capsys.readouterr().out
    ranks = built.ranking[built.ranking["metric"] == "mmd2"].set_index("variant")
    assert ranks.loc["gan", "mean_rank"] == 3.0 and ranks.loc["gmn", "mean_rank"] == ranks.loc["nsgan", "mean_rank"] == 1.5
    assert ranks["test"].iloc[0].startswith("Friedman") and ranks["p"].iloc[0] < 0.01
    wins = {(w.variant, w.other): w.outcome for w in built.wins[built.wins["metric"] == "mmd2"].itertuples()}
    assert wins == {("gmn", "gan"): "win", ("gan", "gmn"): "loss", ("nsgan", "gan"): "win",
                    ("gan", "nsgan"): "loss", ("gmn", "nsgan"): "tie", ("nsgan", "gmn"): "tie"}
    # modes: every run 8, so every pair a tie and no test can separate them
    assert set(built.wins[built.wins["metric"] == "modes_covered"]["outcome"]) == {"tie"}
    table = next(iter(built.tables.values())).set_index("method")
    assert table.loc["gmn", "MMD² ↓"].endswith(" ★") and table.loc["nsgan", "MMD² ↓"].endswith(" ☆")
    assert not table.loc["gan", "MMD² ↓"].endswith(("★", "☆"))
    assert "modes ↑" in table.columns  # every metric column says which direction is better
    verdict = next(iter(built.verdicts.values())).set_index("method")
    assert verdict.loc["gmn", "MMD² ↓"] == "1.50 (1–1–0)" and verdict.loc["gan", "MMD² ↓"] == "3.00 (0–0–2)"
    assert verdict.loc["all alike?", "MMD² ↓"].startswith("Friedman p = ")
    summary = (out / "summary.md").read_text()
    assert summary.index("which variant wins") < summary.index("| method") and re.search(r"\*\*[^*]+\*\* ★", summary)
    assert "★" in printed and "which variant wins" in printed
    ranking_csv = pd.read_csv(out / "ranking.csv")
    assert len(ranking_csv) == len(built.ranking) and (out / "plots" / "ring8_quick_verdict.png").stat().st_size > 10_000


def test_a_failed_variant_is_never_marked_best(tmp_path):
    out = tmp_path / "res"
    write_known_study(out, seeds=3)
    for s in range(3):  # gan's runs all diverged: counted, not ranked, not marked
        write_record(out, "hinge", "ring8", s, {"mmd2": 0.0, "modes_covered": 8.0}, status="diverged")
    built = report.build(out, print_fn=lambda *a: None)
    table = next(iter(built.tables.values())).set_index("method")
    assert table.loc["hinge", "seeds"] == 0 and not str(table.loc["hinge", "MMD² ↓"]).endswith(("★", "☆"))
    assert "hinge" not in set(built.ranking["variant"])


def test_curves_leave_out_a_metric_with_no_values_and_draw_signed_ones_linear(tmp_path):
    hist = pd.DataFrame({"dataset": "t", "variant": "gan", "seed": 0, "step": [0, 10, 20], "train_seconds": [0, 1, 2],
                         "mmd2": [0.5, -0.01, 0.002], "kl_modes": [None, None, None], "fid": [900.0, 20.0, 3.0]})
    assert figures.curve_metrics(hist) == ["fid", "mmd2"]  # KL: no values, no panel
    import matplotlib.pyplot as plt
    fig, (signed, spread) = plt.subplots(1, 2)
    figures.set_value_scale(signed, hist["mmd2"].to_numpy(dtype=float))
    figures.set_value_scale(spread, hist["fid"].to_numpy(dtype=float))
    assert signed.get_yscale() == "linear" and any(line.get_ydata()[0] == 0 for line in signed.get_lines())
    assert spread.get_yscale() == "log"
    plt.close(fig)


SECTION = re.compile(r'<h2 id="([a-z]+)">')


def test_the_page_reads_verdict_first_and_folds_the_pairwise_sentences(tmp_path):
    out = tmp_path / "res"
    write_known_study(out)
    hist = [{"step": 0, "train_seconds": 0.0, "mmd2": 1.0}, {"step": 10, "train_seconds": 1.0, "mmd2": 0.1}]
    write_record(out, "gmn", "grid25", 0, {"mmd2": 0.1}, history=hist)  # a second table, with curves
    assert main(["report", "--out", str(out), "--html"]) == 0
    page = (out / "report.html").read_text()
    built = report.build(out, print_fn=lambda *a: None)
    assert SECTION.findall(page) == ["verdict", "tables", "curves", "samples", "pairs", "runs"]
    verdict_part = page[page.index('id="verdict"'):page.index('id="tables"')]
    assert verdict_part.count("<img ") == 1 and "ring8_quick_verdict.png" in verdict_part
    assert page.count('<img src="data:image/png;base64,') == len(built.figure_files())
    pairs = page[page.index('id="pairs"'):page.index('id="runs"')]
    assert pairs.count("<details>") == 1 and pairs.count("<li") == len(built.comparison)
    # ring8: gmn's MMD², and modes (8 for every variant: equal means share the mark); grid25 has one variant
    assert page.count('<td class="best">') == 4 and page.count('<td class="tied">') == 1
    assert "<script" not in page


def test_p_values_never_round_across_5_percent():
    assert stats.format_p(0.0498) == "0.0498" and stats.format_p(0.0504) == "0.0504"
    assert stats.format_p(0.37) == "0.37" and stats.format_p(0.00068) == "0.00068"


def test_untested_columns_and_one_seed_variants_get_no_marks(tmp_path):
    out = tmp_path / "res"
    for s in range(3):
        write_record(out, "gan", "ring8", s, {"mmd2": 0.5, "energy": 0.2 + s, "modes_covered": 8.0})
        write_record(out, "nsgan", "ring8", s, {"mmd2": 0.6, "energy": 0.1 + s, "modes_covered": 8.0})
    write_record(out, "gmn", "ring8", 0, {"mmd2": 0.0, "energy": 0.0, "modes_covered": 8.0})  # one seed
    table = next(iter(report.build(out, print_fn=lambda *a: None).tables.values())).set_index("method")
    assert not any(str(c).endswith(("★", "☆")) for c in table["energy ↓"])  # energy is never tested
    assert not str(table.loc["gmn", "MMD² ↓"]).endswith(("★", "☆"))  # gmn: one seed, in no test
    assert table.loc["gan", "MMD² ↓"].endswith("★")


def test_one_seed_each_says_why_nothing_is_ranked(tmp_path, capsys):
    out = tmp_path / "res"
    for method in ("gan", "nsgan"):
        write_record(out, method, "ring8", 0, {"mmd2": 0.5, "modes_covered": 8.0})
    assert main(["report", "--out", str(out), "--html"]) == 0
    assert "which variant wins: not judged. Ranks and wins need at least 2 variants" in capsys.readouterr().out
    assert "not judged" in (out / "summary.md").read_text() and "not judged" in (out / "report.html").read_text()


def test_curves_in_time_average_the_seeds_at_the_same_training_second():
    # seed 0 reaches value t at time t; seed 1 is twice as slow (value t/2); both evaluated 3 times
    g = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 1], "step": [0, 5, 10] * 2, "train_seconds": [0, 1, 2, 0, 2, 4],
                      "mmd2": [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]})
    points = figures.points_in_time(g, "mmd2", n=5)
    times, means = [p[0] for p in points], [p[1] for p in points]
    assert times[-1] == 2.0  # up to the time every seed reached, not seed 1's 4 s
    assert means == pytest.approx([t * 0.75 for t in times])  # (t + t/2) / 2
    assert figures.points_in_time(g.assign(mmd2=np.nan), "mmd2") == []


def test_a_learning_curve_holds_a_seed_stopped_early_at_its_last_evaluation():
    """Past a seed's early stop the curve's mean is still over every seed (the stopped one at its last
    value, as the tables and tests count it), not over the seeds still training alone."""
    g = pd.DataFrame({"seed": [0, 0, 0, 1, 1], "step": [0, 10, 20, 0, 10], "hq": [0.0, 50.0, 60.0, 0.0, 90.0]})
    g = g.assign(point=g.groupby("seed").cumcount())
    points = figures.points_by_index(g, "hq")
    assert [p[0] for p in points] == [0, 10, 20]
    assert [p[1] for p in points] == [0.0, 70.0, 75.0]   # step 20: seed 0 at 60, seed 1 held at 90
