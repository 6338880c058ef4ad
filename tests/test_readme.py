"README.md is written from nbs/index.ipynb, and CI runs the README's commands."
import re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
import readme


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_readme_matches_index_notebook():
    assert (ROOT / 'README.md').read_text(encoding='utf-8') == readme.render(), \
        "README.md is out of date: run python tools/readme.py"


def test_render_picks_up_a_changed_notebook(tmp_path):
    nb = '{"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# T\\n", "see [a](10_x.ipynb)"]},' \
         '{"cell_type": "code", "metadata": {}, "source": ["#| hide\\n", "secret()"], "outputs": [], "execution_count": null},' \
         '{"cell_type": "code", "metadata": {}, "source": ["#| eval: false\\n", "shown()"], "outputs": [], "execution_count": null}],' \
         '"metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    (tmp_path / 'index.ipynb').write_text(nb)
    out = readme.render(tmp_path / 'index.ipynb')
    assert '](nbs/10_x.ipynb)' in out and 'secret()' not in out and 'shown()' in out and '#|' not in out


def test_ci_runs_the_readme_commands():
    "The README's set-up and test commands appear verbatim in .ci/run."
    setup, tests = _bash_blocks((ROOT / 'README.md').read_text(encoding='utf-8'))[:2]
    ci = (ROOT / '.ci' / 'run').read_text()
    assert 'pip install -e ".[dev]"' in setup and 'ftnb ' in setup
    for part in setup.split(' && ')[2:]: assert part in ci, part
    assert tests.split(' && ', 1)[1] in ci
