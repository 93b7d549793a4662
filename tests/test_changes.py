"""``report --against``: the same tests of two studies side by side, each verdict's change named."""
import pandas as pd

from bench.changes import paired_tables, verdict_changes
from bench.cli import main

TINY = ["--steps", "8", "--eval-points", "2", "--batch-size", "32", "--no-progress", "--device", "cpu"]


def _tests(rows):
    """A comparison table from (table, a, b, metric, significant, P(a beats b), Holm p) rows."""
    return pd.DataFrame(rows, columns=["dataset", "a", "b", "metric", "significant", "p_a_beats_b", "p_holm"])


def test_each_change_is_named_from_both_outcomes_whatever_the_order_of_the_pair():
    before = _tests([("ring8 · quick", "gmn", "gan", "mmd2", True, 1.0, 0.02),         # gmn better
                     ("ring8 · quick", "gmn", "gan", "kl_modes", True, 1.0, 0.02),     # gmn better
                     ("ring8 · quick", "gmn", "gan", "modes_covered", True, 0.0, 0.02),  # gan better
                     ("ring8 · quick", "gmn", "gan", "high_quality_pct", False, 0.6, 0.4),
                     ("ring8 · quick", "gmn", "gan", "energy", False, 0.9, 0.3),
                     ("ring8 · quick", "gmn", "nsgan", "mmd2", True, 1.0, 0.02)])
    after = _tests([("ring8 · standard", "gan", "gmn", "mmd2", True, 0.0, 0.01),       # gmn better: survived
                    ("ring8 · standard", "gan", "gmn", "kl_modes", True, 1.0, 0.01),   # gan better: reversed
                    ("ring8 · standard", "gan", "gmn", "modes_covered", False, 0.5, 1.0),  # vanished
                    ("ring8 · standard", "gan", "gmn", "high_quality_pct", True, 0.0, 0.01),  # gmn: new
                    ("ring8 · standard", "gan", "gmn", "energy", False, 0.1, 0.5),     # neither
                    ("ring8 · standard", "gan", "lsgan", "mmd2", True, 1.0, 0.01)])
    changes = verdict_changes(before, after).set_index(["a", "b", "metric"])
    assert changes.loc[("gan", "gmn", "MMD²"), ["before", "after", "change"]].tolist() == [
        "gmn better", "gmn better", "survived"]
    assert changes.loc[("gan", "gmn", "KL modes"), ["before", "after", "change"]].tolist() == [
        "gmn better", "gan better", "reversed"]
    assert changes.loc[("gan", "gmn", "modes"), ["before", "after", "change"]].tolist() == [
        "gan better", "no difference", "vanished"]
    assert changes.loc[("gan", "gmn", "HQ %"), "change"] == "new"
    assert changes.loc[("gan", "gmn", "energy"), "change"] == "neither"
    assert changes.loc[("gan", "lsgan", "MMD²"), ["before", "change"]].tolist() == ["not tested", "only after"]
    assert changes.loc[("gmn", "nsgan", "MMD²"), ["after", "change"]].tolist() == ["not tested", "only before"]
    assert (changes["before_table"] == "ring8 · quick").all() and (changes["dataset"] == "ring8 · standard").all()


def test_tables_pair_by_dataset_and_by_their_whole_label_when_a_folder_holds_several():
    assert paired_tables(["ring8 · quick", "grid25 · quick"], ["ring8 · standard", "mnist · quick"]) == {
        "ring8 · standard": "ring8 · quick"}
    both = ["ring8 · quick", "ring8 · quick · recommended"]
    assert paired_tables(both, both) == {label: label for label in both}
    assert paired_tables(both, ["ring8 · standard", "ring8 · standard · recommended"]) == {}


def test_report_against_another_folder_writes_the_changes_and_a_bad_folder_writes_nothing(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", "--methods", "gan,nsgan", "--datasets", "ring8", "--seeds", "0,1", "--out", str(out),
                 *TINY]) == 0
    summary = (out / "summary.csv").read_bytes()
    assert main(["report", "--out", str(out), "--against", str(tmp_path / "missing")]) == 2
    assert "no comparison.csv there; build its report first" in capsys.readouterr().err
    assert not (out / "changes.md").exists() and (out / "summary.csv").read_bytes() == summary
    assert main(["report", "--out", str(out), "--against", str(out)]) == 0
    changes = pd.read_csv(out / "changes.csv")
    assert len(changes) == len(pd.read_csv(out / "comparison.csv")) > 0
    assert set(changes["change"]) <= {"survived", "neither"}  # a study against itself changes nothing
    assert "# Verdicts of" in (out / "changes.md").read_text() and "changes:" in capsys.readouterr().out


def test_nothing_to_compare_says_why(tmp_path):
    from bench.changes import changes_markdown, load_comparison, why_nothing
    (tmp_path / "comparison.csv").write_text("\n")  # what a report of one variant per table writes
    one_variant = load_comparison(tmp_path)
    toy = _tests([("ring8 · quick", "gan", "gmn", "mmd2", True, 1.0, 0.02)])
    assert one_variant.empty and verdict_changes(one_variant, toy).empty
    assert why_nothing(one_variant, toy) == "the other study has no pairwise test (one variant per table)."
    mnist = _tests([("mnist · quick", "gan", "gmn", "fd", True, 1.0, 0.02)])
    assert why_nothing(mnist, toy).startswith("no dataset in common (this study: ring8 · quick; the other: mnist")
    two = _tests([("ring8 · quick", "gan", "gmn", "mmd2", True, 1.0, 0.02),
                  ("ring8 · quick · recommended", "gan", "gmn", "mmd2", True, 1.0, 0.02)])
    assert why_nothing(toy.assign(dataset="ring8 · standard"), two).startswith("tables of a shared dataset cannot")
    same = changes_markdown(verdict_changes(toy, toy), tmp_path, tmp_path)  # a folder against itself: both columns
    assert f"before: {tmp_path}" in same and f"after: {tmp_path}" in same
