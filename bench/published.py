"""Published results beside ours: the numbers of the papers whose protocols the presets reproduce
(``bench/published.toml``), and the verdicts ``bench report`` gives when a table's runs used a preset.

Each ``[[result]]`` of the data file is one method of one table of one paper on one dataset::

    [[result]]
    paper = "Lin et al. 2018 (PacGAN)"   # short citation
    table = "Table 1"                    # the paper's table
    preset = "pacgan-toy"                # the preset that reproduces its protocol; omitted: none does
    dataset = "grid25"                   # bench's name: ring8, grid25, stacked-mnist, mnist
    label = "PacGAN2"                    # the paper's name of the method
    method = "nsgan"                     # the bench variant it is; omitted: bench has none (ALI, VEEGAN)
    options = {pack = 2}                 # its options (those left out are at their defaults), and optimiser
                                         # keys (lr, betas, ...) where the row reads settings the paper omits
    reading = "..."                      # optional: whose settings the options are, where the paper gives
                                         # none; they are then the row's protocol, not departures from it
    trials = 10                          # runs the published numbers summarise
    spread = "se"                        # what ± is: std (over trials), se (standard error) or none
    metrics = {modes_covered = [23.8, 0.7], high_quality_pct = [91.3, 0.8], kl_modes = [0.13, 0.04]}
    note = "..."                         # optional: where the numbers come from, caveats

A metric is ``[value, ±]``, or a plain number where the paper gives no ± for it. Metric names are
bench's (:data:`bench.METRICS`); a metric bench does not compute keeps the paper's name
(:data:`PAPER_ONLY`): listed, never compared.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
from scipy import stats as scipy_stats

from bench import files, presets, settings, stats
from bench.errors import BenchError
from bench.metrics import METRICS
from bench.spec import describe_overrides
from methods import METHODS

PATH = Path(__file__).with_name("published.toml")  # package data (pyproject.toml ships it)
SPREADS = ("std", "se", "none")
PUBLISHED_DATASETS = ("ring8", "grid25", "stacked-mnist", "mnist")  # the datasets of the published tables
PAPER_ONLY = {  # metrics of the papers that bench does not compute: name -> what it is
    "parzen_log_likelihood": "Parzen-window log-likelihood of the test set (nats)",
}
KEYS = ("paper", "table", "preset", "dataset", "label", "method", "options", "reading", "trials", "spread", "metrics",
        "note")
REQUIRED = ("paper", "table", "dataset", "label", "trials", "spread", "metrics")
Z = 2  # a difference within Z combined standard errors agrees
MIN_SEEDS_NO_SPREAD = 5  # a row without ± is judged by our 95 % interval, over at least this many seeds
NOTE = (f"Published values and ours: mean ± standard error (a published std is divided by √trials; ours is the "
        f"std over finished seeds ÷ √seeds). A cell agrees when |ours − published| ≤ {Z} combined SE, "
        f"√(SE_published² + SE_ours²); that is about a 95 % band if both are means of independent runs, and it "
        f"says nothing where a protocol differs: such runs are 'not comparable', with the reason. A paper "
        f"without ± agrees when its mean lies inside our 95 % Student-t interval over at least "
        f"{MIN_SEEDS_NO_SPREAD} seeds (with fewer: cannot judge).")


@dataclasses.dataclass(frozen=True)
class Published:
    """One row of the data file, checked."""
    paper: str
    table: str
    preset: str | None
    dataset: str
    label: str
    method: str | None
    options: dict
    trials: int
    spread: str
    metrics: dict          # name -> (value, the paper's ± or None)
    note: str = ""
    reading: str = ""      # whose settings the options are, where the paper gives none: then they are its protocol

    @property
    def name(self) -> str:
        return f"{self.paper} {self.table}, {self.label} on {self.dataset}"

    def se(self, metric: str) -> float | None:
        """The standard error of a published value (a std over trials ÷ √trials); None without ±."""
        plus_minus = self.metrics[metric][1]
        if plus_minus is None:
            return None
        return plus_minus / math.sqrt(self.trials) if self.spread == "std" else plus_minus


def load(path: Path = PATH) -> list[Published]:
    """Every row of a published-results file, checked; BenchError naming the file and row otherwise."""
    path = Path(path)
    data = files.read_toml(path, "published results")
    if set(data) - {"result"} or not isinstance(data.get("result", []), list):
        raise BenchError(f"published results {path}: the file holds [[result]] rows only; "
                         f"found {', '.join(sorted(set(data) - {'result'})) or 'result as a non-list'}")
    rows = [check_row(row, f"{path} row {i}") for i, row in enumerate(data.get("result", []), 1)]
    seen = {}
    for i, row in enumerate(rows, 1):
        key = (row.paper, row.table, row.preset, row.dataset, row.label)
        if key in seen:
            raise BenchError(f"{path} row {i} ({row.name}) repeats row {seen[key]}")
        seen[key] = i
    return rows


def check_row(row, where: str) -> Published:
    """One [[result]] table -> :class:`Published`, every field checked (``where`` names it in errors)."""
    if not isinstance(row, dict):
        raise BenchError(f"{where} is not a table")
    where = f"{where} ({row.get('paper', '?')} {row.get('table', '?')}, {row.get('label', '?')})"

    def bad(why):
        raise BenchError(f"{where}: {why}")
    unknown = sorted(set(row) - set(KEYS))
    if unknown:
        bad(f"unknown key {', '.join(unknown)}; allowed: {', '.join(KEYS)}")
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        bad(f"missing {', '.join(missing)} (every row needs {', '.join(REQUIRED)})")
    for key in ("paper", "table", "label", "preset", "method", "note", "reading"):
        if key in row and not (isinstance(row[key], str) and row[key].strip()):
            bad(f"{key} must be a non-empty string; got {row[key]!r}")
    if row["dataset"] not in PUBLISHED_DATASETS:
        bad(f"dataset {row['dataset']!r} is not one of {', '.join(PUBLISHED_DATASETS)}")
    trials = row["trials"]
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        bad(f"trials must be an integer >= 1; got {trials!r}")
    if row["spread"] not in SPREADS:
        bad(f"spread must be one of {', '.join(SPREADS)} (what the paper's ± is); got {row['spread']!r}")
    options = row.get("options", {})
    if not isinstance(options, dict):
        bad(f"options must be a table; got {options!r}")
    method = row.get("method")
    if method is None and options:
        bad("options without a method")
    if "reading" in row and not options:
        bad("reading says whose settings the options are; this row has no options")
    if method is not None:  # the method's options and, where a paper's settings are read, its optimiser keys
        own, keys = settings.split_run_keys(options)
        try:
            options = {**METHODS.validate(method, own), **settings.parse_run_keys(method, keys)}
        except BenchError as err:
            bad(str(err))
    metrics = row["metrics"]
    if not isinstance(metrics, dict) or not metrics:
        bad("metrics must be a non-empty table of name = value or [value, ±]")
    values = {}
    for name, value in metrics.items():
        if name not in METRICS and name not in PAPER_ONLY:
            bad(f"metric {name!r} is neither bench's ({', '.join(METRICS)}) nor a paper-only one "
                f"({', '.join(PAPER_ONLY)})")
        pair = value if isinstance(value, list) else [value, None]
        if len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                     for v in pair if v is not None) or pair[0] is None:
            bad(f"metric {name} takes a number or [value, ±] of numbers; got {value!r}")
        if pair[1] is not None and (pair[1] < 0 or row["spread"] == "none"):
            bad(f"metric {name}: ± {pair[1]} " + ("is negative" if pair[1] < 0 else "in a row whose spread is none"))
        values[name] = (float(pair[0]), None if pair[1] is None else float(pair[1]))
    return Published(paper=row["paper"], table=row["table"], preset=row.get("preset"), dataset=row["dataset"],
                     label=row["label"], method=method, options=dict(options), trials=trials, spread=row["spread"],
                     metrics=values, note=row.get("note", ""), reading=row.get("reading", ""))


def _as_tuple(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value  # a stored [0.5, 0.9] is (0.5, 0.9)


def _used(spec: dict, key: str):
    """The value a stored run used for a row's option or optimiser key (None where its networks differ):
    read from what ran, so that --lr 1e-4 and --set NAME.lr=1e-4 (the same run) match alike."""
    if key not in settings.RUN_KEYS:
        neutral = getattr(METHODS.get(spec["method"]), "neutral_options", {}) or {}  # pack=1 is left out of specs
        return {**neutral, **(spec.get("method_options") or {})}.get(key)
    if key == "batch_size":
        return spec.get("batch_size")
    family, network = settings.key_family(key)
    field = "name" if family == "optimizer" else family
    values = {_as_tuple(o.get(field)) for net, o in (spec.get("optimizers") or {}).items() if network in (None, net)}
    return values.pop() if len(values) == 1 else None


def _covered(row: Published, spec: dict) -> set:
    """The run's changed options and settings that the row names (lr_g and lr_d count under the
    row's lr; --lr as much as --set NAME.lr)."""
    run_keys = {k: v for k, v in (spec.get("run_overrides") or {}).items() if k in settings.RUN_KEYS}
    changed = {**run_keys, **(spec.get("method_overrides") or {})}
    return {k for k in changed if k in row.options or settings.key_family(k)[0] in row.options}


def matches(row: Published, spec: dict) -> bool:
    """Whether a stored run (its spec) is a run of the row's variant: the same method, every option
    (or optimiser key, such as ``lr``) the row names at the row's value, and no option changed from
    its default that the row does not name (gan[d_steps=2] is not the paper's GAN)."""
    if row.method is None or spec["method"] != row.method:
        return False
    return (all(_as_tuple(_used(spec, k)) == _as_tuple(v) for k, v in row.options.items())
            and set(spec.get("method_overrides") or {}) <= _covered(row, spec))


def run_protocol(spec: dict, rows: list[Published] | None = None) -> tuple[bool, str]:
    """Whether a run (its spec, under a preset) follows the paper's protocol, as its report will say:
    :func:`bench.presets.comparability`, unless a row with a ``reading`` matches it (:func:`protocol`)."""
    stored = presets.comparability(spec)
    reading = [r for r in (load() if rows is None else rows) if r.reading and r.preset == spec.get("profile")
               and r.dataset == spec["dataset"] and matches(r, spec)]
    return protocol(reading[0], spec, stored) if reading else stored


def protocol(row: Published, spec: dict, stored: tuple[bool, str]) -> tuple[bool, str]:
    """Whether a run matched to ``row`` followed the paper's protocol: its stored verdict, except that
    a row with a ``reading`` takes its options as the protocol (settings the paper does not give)."""
    return presets.comparability(spec, _covered(row, spec)) if row.reading else stored


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def verdict(published: float, se_published, ours: float, se_ours, seeds: int | None = None) -> str:
    """Ours against a published value, in words, each side a mean with its standard error (None or
    nan: unknown, as for a paper without ± or one seed of ours). A paper without ±, given the
    number of our ``seeds``: it agrees when the published mean lies inside our 95 % Student-t
    interval over at least :data:`MIN_SEEDS_NO_SPREAD` seeds."""
    se_published, se_ours = _finite(se_published), _finite(se_ours)
    delta = ours - published
    direction = f"ours {'higher' if delta > 0 else 'lower'} by {abs(delta):.3g}"
    if se_published is None and seeds is not None:
        if seeds < MIN_SEEDS_NO_SPREAD or se_ours is None:
            return (f"cannot judge: the paper gives no ±, and {seeds} seed{'s' if seeds != 1 else ''} of ours "
                    f"{'are' if seeds != 1 else 'is'} fewer than {MIN_SEEDS_NO_SPREAD}" + (f"; {direction}" if delta else "; equal"))
        half = float(scipy_stats.t.ppf(0.975, seeds - 1)) * se_ours
        where = (f"the published mean {'inside' if abs(delta) <= half else 'outside'} our 95 % interval "
                 f"[{ours - half:.3g}, {ours + half:.3g}] over {seeds} seeds; the paper gives no ±")
        return f"agrees ({where})" if abs(delta) <= half else f"differs: {direction} ({where})"
    known = [s for s in (se_published, se_ours) if s is not None]
    if not known:
        return ("cannot judge: neither spread is known (the paper gives no ± and one seed of ours has none)"
                + (f"; {direction}" if delta else "; equal"))
    combined = math.sqrt(sum(s * s for s in known))
    if combined == 0:
        return "agrees (equal, no spread on either side)" if delta == 0 else \
            f"differs: {direction} (no spread on either side)"
    caveats = []
    if se_published is None:
        caveats.append("published spread unknown: compared against our SE only")
    elif se_published == 0:
        caveats.append("published ± 0: the combined SE is ours alone")
    if se_ours is None:
        caveats.append("one seed: our spread unknown, compared against the published SE only")
    elif se_ours == 0 and se_published:
        caveats.append("our seeds all equal: the combined SE is the published one alone")
    tail = "".join(f"; {c}" for c in caveats)
    if abs(delta) <= Z * combined:
        return f"agrees (|Δ| = {abs(delta):.3g} ≤ {Z} combined SE = {Z * combined:.3g}){tail}"
    return f"differs: {direction} (> {Z} combined SE = {Z * combined:.3g}){tail}"


def verdicts(records: dict, variant_ids) -> dict:
    """Each variant's preset verdict as its record holds it (made from the run's spec when it was
    recorded; a record without one, such as an early failed run, gets it from its spec here). A row
    with a ``reading`` judges its runs again (:func:`protocol`)."""
    out = {}
    for vid in variant_ids:
        stored = records[vid].get("preset")
        if stored is None:
            comparable, note = presets.comparability(records[vid]["spec"])
            stored = {"comparable": comparable, "note": note}
        out[vid] = stored
    return out


def beside_ours(runs, records: dict, rows: list[Published] | None = None):
    """For every table of ``runs`` (report.runs_table) whose runs used a preset with published rows
    for its dataset: per published row and metric, the published value, ours (mean ± SE over the
    finished seeds of each matching variant) and the verdict. ``records`` maps a variant id to one
    of its runs' record. Rows of methods bench lacks and paper-only metrics are listed for context."""
    rows = load() if rows is None else rows
    specs = {vid: r["spec"] for vid, r in records.items()}
    out = []
    for heading, g in runs[runs["status"] != "reference"].groupby("dataset", sort=False):
        first = specs[g["variant_id"].iloc[0]]
        mine = [r for r in rows if r.preset is not None and r.preset == first.get("profile")
                and r.dataset == first["dataset"]]
        if not mine:
            continue
        variants = {vid: specs[vid] for vid in dict.fromkeys(g["variant_id"])}
        names = dict(zip(g["variant_id"], g["variant"]))
        stored = {vid: (v["comparable"], v["note"]) for vid, v in verdicts(records, variants).items()}
        for row in mine:
            matched = [vid for vid, spec in variants.items() if matches(row, spec)]
            judged = {vid: protocol(row, variants[vid], stored[vid]) for vid in matched}
            for metric, (value, plus_minus) in row.metrics.items():
                base = {"dataset": heading, "paper": row.paper, "table": row.table, "label": row.label,
                        "method": row.method or "", "options": describe_overrides(row.options),
                        "metric": metric, "published": value, "published_pm": plus_minus, "spread": row.spread,
                        "trials": row.trials, "published_se": row.se(metric), "note": row.note}
                empty = {"variant": "", "ours": math.nan, "ours_se": math.nan, "seeds": 0, "comparable": None}
                if row.method is None:
                    out.append({**base, **empty, "verdict": "published only, for context"})
                    continue
                if metric in PAPER_ONLY:
                    out.append({**base, **empty, "verdict": "published only: the paper's own metric, which bench "
                                                            "does not compute"})
                    continue
                if not matched:
                    out.append({**base, **empty, "verdict": "no run of this variant"})
                for vid in matched:
                    finished = g[(g["variant_id"] == vid) & (g["status"] == "ok")]
                    mean, se, n = stats.mean_se(finished[metric].tolist())
                    comparable, why = judged[vid]
                    if not comparable:  # the numbers still say how far a departure from the protocol lands
                        text = f"not comparable: {why}" + (
                            f"; as measured, {verdict(value, row.se(metric), mean, se, n)}" if n else "")
                    elif n == 0:
                        text = (f"no finished run of this variant with {metric} defined "
                                f"(of {int((g['variant_id'] == vid).sum())} runs)")
                    else:
                        text = verdict(value, row.se(metric), mean, se, n)
                    out.append({**base, "variant": names[vid], "ours": mean, "ours_se": se, "seeds": n,
                                "comparable": comparable, "verdict": text})
    return pd.DataFrame(out)


def _cell(mean, se, n, unit: str) -> str:
    if mean is None or not math.isfinite(mean):
        return "–"
    text = f"{mean:.4g}" + (f" ± {se:.2g}" if se is not None and math.isfinite(se) else "")
    return f"{text} ({n} {unit}{'s' if n != 1 else ''})"


def display_tables(comparison) -> dict:
    """Per report table, the comparison under readable titles: published ± SE (with trials and the
    paper's own ±), ours ± SE (seeds), verdict."""
    tables = {}
    if comparison.empty:
        return tables
    for label, g in comparison.groupby("dataset", sort=False):
        published = []
        for r in g.itertuples():
            cell = _cell(r.published, r.published_se, r.trials, "trial")
            if r.spread == "std" and r.published_pm is not None and math.isfinite(r.published_pm):
                cell += f", std {r.published_pm:.3g}"
            published.append(cell)
        tables[label] = pd.DataFrame({
            "paper": [f"{p}, {t}" for p, t in zip(g["paper"], g["table"])],
            "method": g["label"], "ours": g["variant"].replace("", "–"),
            "metric": [METRICS[m][0] if m in METRICS else m for m in g["metric"]],
            "published ± SE": published,
            "ours ± SE": [_cell(m, s, n, "seed") for m, s, n in zip(g["ours"], g["ours_se"], g["seeds"])],
            "verdict": g["verdict"]}).reset_index(drop=True)
    return tables


def notes(comparison, label: str) -> list[str]:
    """The notes of the published rows of one table, once each."""
    g = comparison[comparison["dataset"] == label]
    return list(dict.fromkeys(f"{p}, {t}, {m}: {n}" for p, t, m, n in zip(g["paper"], g["table"], g["label"],
                                                                        g["note"]) if n))
