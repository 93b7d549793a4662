"""`bench report --html`: one self-contained page, every figure embedded, every text escaped."""
import re

from bench import report
from bench.cli import main
from conftest import write_record
from test_published import write_study

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def test_the_html_report_holds_tables_verdicts_figures_published_rows_and_revisions(tmp_path, capsys):
    out = tmp_path / "res"
    write_study(out)
    write_record(out, "gan", "ring8", 9, {"modes_covered": 7.0, "mmd2": 0.02},
                 revision="fedcba9876543210fedcba9876543210fedcba98+dirty")
    assert main(["report", "--out", str(out), "--html"]) == 0
    assert f"html: {out / 'report.html'}" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    built = report.build(out, print_fn=lambda *a: None)
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert not EXTERNAL.search(page) and "http://" not in page and "https://" not in page
    for heading, table in built.tables.items():
        assert f"<h3>{heading}</h3>" in page
        assert all(f"<td>{variant}</td>" in page for variant in table["method"])
    assert page.count('<img src="data:image/png;base64,') == len(built.figure_files()) >= 3
    assert "grid25 · pacgan-toy" in page and "not comparable: steps 3,000" in page and "PacGAN3" in page
    verdicts = built.comparison["verdict"]
    assert len(verdicts) and all(v.replace("<", "&lt;").replace(">", "&gt;") in page for v in verdicts)
    assert "0123456789abcdef0123456789abcdef01234567" in page  # every run's git revision and environment
    assert "fedcba9876543210fedcba9876543210fedcba98+dirty" in page and "torch 2.14.1" in page
    assert page.count("<tr>") >= len(built.runs)


def test_names_from_records_are_escaped(tmp_path):
    out = tmp_path / "res"
    evil = "<script>alert('x')</script> & co"
    final = {"modes_covered": 8.0, "mmd2": 0.01}
    for seed in (0, 1):
        write_record(out, evil, "ring8", seed, final, status="reference")
        write_record(out, "gan", "ring8", seed, {**final, "mmd2": 0.02 + seed}, label="gan <b>&</b> friends")
        write_record(out, "nsgan", "ring8", seed, {**final, "mmd2": 0.03 + seed})
    assert main(["report", "--out", str(out), "--html"]) == 0
    page = (out / "report.html").read_text()
    assert "<script" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(" in page and ")&lt;/script&gt; &amp; co" in page
    assert "gan &lt;b&gt;&amp;&lt;/b&gt; friends" in page


def test_run_writes_the_html_report_too(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", "--methods", "gan", "--datasets", "ring8", "--out", str(out), "--html", "--steps", "6",
                 "--eval-points", "1", "--batch-size", "16", "--no-progress", "--device", "cpu"]) == 0
    assert f"html: {out / 'report.html'}" in capsys.readouterr().out
    assert '<img src="data:image/png;base64,' in (out / "report.html").read_text()
