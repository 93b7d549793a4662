"""Which verdicts changed between two studies (``python -m bench report --out NEW --against OLD``):
the same pairwise tests of two results folders, a budget and a longer one say, side by side, each
marked survived, reversed, vanished or new. Read from each folder's ``comparison.csv`` as last
reported, so both sides are exactly the verdicts their reports print."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import files
from bench.errors import BenchError
from bench.metrics import METRICS
from bench.report import outcome

CHANGES = {  # (before, after) outcomes -> the change, in words
    "survived": "the same variant significantly better in both",
    "reversed": "significant in both, the other variant better",
    "vanished": "significant before, no significant difference after",
    "new": "no significant difference before, significant after",
    "neither": "no significant difference in either",
}
NOTE = ("Each pairwise test (Wilcoxon or Mann-Whitney, Holm-corrected within each study's table, 5 %) as each "
        "study's own report gave it; tables are paired by dataset (by the whole label where a folder holds "
        "several tables of one dataset). held: at how many evaluations of the last third of training the "
        "test gave that study's verdict. " + "; ".join(f"{k}: {v}" for k, v in CHANGES.items()) + ".")


COLUMNS = ["dataset", "a", "b", "metric", "significant", "p_a_beats_b", "p_holm"]  # what is read of a comparison


def load_comparison(folder: Path) -> pd.DataFrame:
    """A results folder's pairwise tests (its ``comparison.csv``), or a clear error."""
    path = Path(folder) / "comparison.csv"
    if not path.is_file():
        raise BenchError(f"--against {folder}: no comparison.csv there; build its report first "
                         f"(python -m bench report --out {folder})")
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:  # a study of one variant per table has no pairwise tests
        return pd.DataFrame(columns=COLUMNS)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise BenchError(f"--against {folder}: comparison.csv cannot be read ({err}); rebuild it with "
                         f"python -m bench report --out {folder}") from None
    missing = set(COLUMNS) - set(table)
    if missing and len(table):
        raise BenchError(f"--against {folder}: comparison.csv lacks {', '.join(sorted(missing))}; rebuild it with "
                         f"python -m bench report --out {folder}")
    return table


def _dataset(label: str) -> str:
    return label.split(" · ")[0]


def paired_tables(before: list[str], after: list[str]) -> dict[str, str]:
    """Each table label of the newer study -> its counterpart in the older: the table of the same
    dataset when each study holds one of it, else the table of the same label."""
    pairs = {}
    for label in after:
        same = [b for b in before if _dataset(b) == _dataset(label)]
        mine = [a for a in after if _dataset(a) == _dataset(label)]
        if len(same) == 1 and len(mine) == 1:
            pairs[label] = same[0]
        elif label in before:
            pairs[label] = label
    return pairs


def _tests(table: pd.DataFrame) -> dict[tuple, dict]:
    """(table, variant, variant, metric) -> the test's outcome for the first variant of the sorted pair
    (+1 better, −1 worse, 0 no significant difference), its Holm p and stability."""
    tests = {}
    for row in table.to_dict("records"):
        a, b = sorted((row["a"], row["b"]))
        sign = 1 if a == row["a"] else -1
        held = (f"{int(row['holds'])} of {int(row['holds_of'])}"
                if pd.notna(row.get("holds")) and pd.notna(row.get("holds_of")) else "")
        tests[row["dataset"], a, b, row["metric"]] = {
            "outcome": sign * outcome(bool(row["significant"]), row["p_a_beats_b"]),
            "p_holm": row["p_holm"], "held": held}
    return tests


def _said(a: str, b: str, result: int) -> str:
    return {1: f"{a} better", -1: f"{b} better", 0: "no difference"}[result]


def _change(before: int, after: int) -> str:
    if before == after:
        return "survived" if before else "neither"
    if before and after:
        return "reversed"
    return "vanished" if before else "new"


def _row(table, before_table, a, b, metric, theirs, mine) -> dict:
    """One test of both studies (``theirs``/``mine`` None where a study lacks it) as a row of the changes."""
    change = (_change(theirs["outcome"], mine["outcome"]) if theirs and mine
              else "only after" if mine else "only before")
    return {"dataset": table, "before_table": before_table, "a": a, "b": b,
            "metric": METRICS[metric][0] if metric in METRICS else metric,
            "before": _said(a, b, theirs["outcome"]) if theirs else "not tested",
            "p_holm_before": theirs["p_holm"] if theirs else None, "held_before": theirs["held"] if theirs else "",
            "after": _said(a, b, mine["outcome"]) if mine else "not tested",
            "p_holm_after": mine["p_holm"] if mine else None, "held_after": mine["held"] if mine else "",
            "change": change}


def verdict_changes(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Every test of ``after`` whose table has a counterpart in ``before`` (:func:`paired_tables`),
    with both outcomes and the change; a test found on one side only says so."""
    old, new = _tests(before), _tests(after)
    pairs = paired_tables(list(dict.fromkeys(before["dataset"])) if len(before) else [],
                          list(dict.fromkeys(after["dataset"])) if len(after) else [])
    matched = {(pairs[t], a, b, m) for (t, a, b, m) in new if t in pairs}
    rows = [_row(table, pairs[table], a, b, metric, old.get((pairs[table], a, b, metric)), mine)
            for (table, a, b, metric), mine in new.items() if table in pairs]
    after_of = {p: t for t, p in pairs.items()}
    rows += [_row(after_of[table], table, a, b, metric, theirs, None)
             for (table, a, b, metric), theirs in old.items()
             if table in after_of and (table, a, b, metric) not in matched]
    return pd.DataFrame(rows, columns=["dataset", "before_table", "a", "b", "metric", "before", "p_holm_before",
                                       "held_before", "after", "p_holm_after", "held_after", "change"])


def _p(p) -> str:
    return "" if p is None or pd.isna(p) else f" (Holm p = {p:.2g})"


def changes_markdown(changes: pd.DataFrame, before: Path, after: Path, why_none: str = "") -> str:
    """The changed and surviving verdicts as a table, with a count of the tests significant in neither;
    ``why_none``: why there is nothing to compare, when ``changes`` is empty (:func:`why_nothing`)."""
    lines = [f"# Verdicts of {after} against {before}", ""]
    if changes.empty:
        return "\n".join(lines + [f"No pairwise test to set side by side: {why_none}", ""])
    shown = changes[changes["change"] != "neither"]
    counts = changes["change"].value_counts()
    lines += [", ".join(f"{counts[c]} {c}" for c in [*CHANGES, "only before", "only after"] if c in counts)
              + f" (of {len(changes)} tests).", ""]
    if len(shown):
        table = pd.DataFrame({
            "table": shown["dataset"], "verdict": [f"{a} vs {b}, {m}" for a, b, m in
                                                   zip(shown["a"], shown["b"], shown["metric"])],
            f"before: {before}": [s + _p(p) + (f", held {h}" if h else "") for s, p, h in
                          zip(shown["before"], shown["p_holm_before"], shown["held_before"])],
            f"after: {after}": [s + _p(p) + (f", held {h}" if h else "") for s, p, h in
                         zip(shown["after"], shown["p_holm_after"], shown["held_after"])],
            "change": shown["change"]})
        lines += [table.to_markdown(index=False), ""]
    return "\n".join(lines + [NOTE, ""])


def why_nothing(before: pd.DataFrame, after: pd.DataFrame) -> str:
    """Why two comparison tables give no test to set side by side."""
    if before.empty or after.empty:
        empty = " and ".join(side for side, t in (("the other study", before), ("this study", after)) if t.empty)
        return f"{empty} has no pairwise test (one variant per table)."
    old, new = list(dict.fromkeys(before["dataset"])), list(dict.fromkeys(after["dataset"]))
    if not {_dataset(t) for t in old} & {_dataset(t) for t in new}:
        return f"no dataset in common (this study: {', '.join(new)}; the other: {', '.join(old)})."
    return (f"tables of a shared dataset cannot be paired: a folder holds several of it and no two labels are the "
            f"same (this study: {', '.join(new)}; the other: {', '.join(old)}).")


def write(before: pd.DataFrame, after: pd.DataFrame, before_folder: Path, out: Path) -> str:
    """The verdict changes from ``before``'s tests to ``after``'s in OUT/changes.md and OUT/changes.csv,
    both or neither; returns what to print."""
    changes = verdict_changes(before, after)
    text = changes_markdown(changes, before_folder, out, "" if len(changes) else why_nothing(before, after))
    unpaired = sorted(set(after["dataset"]) - set(changes["dataset"])) if len(after) else []
    if unpaired and len(changes):
        text += f"\nNot set side by side (no counterpart in {before_folder}): {', '.join(unpaired)}.\n"
    staged = files.Staged()
    staged.add(Path(out) / "changes.md", text.encode())
    staged.add(Path(out) / "changes.csv", changes.to_csv(index=False).encode())
    try:
        staged.commit()
    except OSError as err:
        raise BenchError(f"cannot write changes.md under {out}: {err.strerror or err}") from None
    return f"{text}\nchanges: {Path(out) / 'changes.md'}, {Path(out) / 'changes.csv'}"
