"""The README stays short and quotes the committed metrics, never numbers typed by hand."""

from pathlib import Path

from slug_cli import readme

ROOT = Path(__file__).resolve().parents[1]


def test_result_tables_are_the_committed_metrics():
    for name in readme.FILES:
        text = (ROOT / name).read_text()
        assert "<!-- table:" in text, name
        assert readme.render(text, ROOT) == text, (
            f"{name}: a table differs from metrics/*.json; run python -m slug_cli.readme")


def test_readme_is_short_with_a_two_command_quick_start():
    text = (ROOT / "README.md").read_text()
    assert len(text) < 12_000, len(text)
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    block = quick.split("```bash", 1)[1].split("```", 1)[0]
    commands = [ln for ln in block.splitlines() if ln.strip()]
    assert [c.split("#")[0].strip() for c in commands] == ["python3 dev.py demo",
                                                           "python3 dev.py test"]
