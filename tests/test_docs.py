"""The documents tell the truth: every table is the one its results file generates, the README's
Python example prints what its comment says, and no link leaves the repository."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from gradinv.report.tables import documents, render

ROOT = Path(__file__).parents[1]
LINK = re.compile(r"\]\(([a-z]+://[^)\s]+|[\w./#-]*[./][\w./#-]*)\)")  # a URL or a file path


@pytest.mark.parametrize("path", documents(str(ROOT)), ids=lambda p: Path(p).name)
def test_tables_match_their_results_files(path):
    text = Path(path).read_text()
    assert render(text, str(ROOT)) == text, (
        f"{path} disagrees with docs/results: run `python -m gradinv.report.tables --write`"
    )


@pytest.mark.parametrize("path", documents(str(ROOT)), ids=lambda p: Path(p).name)
def test_links_stay_inside_the_repository(path):
    doc = Path(path)
    for target in LINK.findall(doc.read_text()):
        assert not re.match(r"[a-z]+://", target), f"{doc.name} links outside: {target}"
        resolved = (doc.parent / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(ROOT) and resolved.exists(), f"{doc.name}: {target}"
    assert "shared/" not in doc.read_text().replace("/shared/sweeps", ""), doc.name


def test_readme_example_prints_what_its_comment_says():
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    promised = re.search(r"# prints (\S+)", code)
    assert promised, "the README example must say what it prints"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue().strip().splitlines()[-1] == promised.group(1)
