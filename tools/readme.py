"""Write README.md from nbs/index.ipynb without Quarto.

`nbdev_readme` needs the Quarto binary, which cannot be installed everywhere we
work, so this renders the docs home the simple way: markdown cells as they are,
code cells as Python blocks (cells with a `#| hide` directive left out).
`tests/test_readme.py` checks that README.md matches; run
`python tools/readme.py` after editing the index notebook.
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "<!-- Written by tools/readme.py from nbs/index.ipynb: edit the notebook, not this file. -->\n\n"


def _directives(src: str) -> set:
    "The nbdev directives (`#| hide` -> 'hide') at the top of a code cell."
    return {l[3:].strip().split()[0] for l in src.splitlines() if l.startswith('#| ') and l[3:].strip()}


def _repo_links(md: str) -> str:
    "Point the docs' relative notebook links (`](10_x.ipynb)`) at `nbs/` for a README at the top."
    return re.sub(r'\]\((?!https?:|#|nbs/)([^)\s]+\.ipynb)\)', r'](nbs/\1)', md)


def render(nb_path: Path = ROOT / 'nbs' / 'index.ipynb') -> str:
    "The README text for the notebook at `nb_path`."
    parts = []
    for cell in json.loads(Path(nb_path).read_text(encoding='utf-8'))['cells']:
        src = ''.join(cell['source']).strip()
        if not src: continue
        if cell['cell_type'] == 'markdown': parts.append(_repo_links(src))
        elif cell['cell_type'] == 'code' and not _directives(src) & {'hide', 'export', 'exporti'}:
            code = '\n'.join(l for l in src.splitlines() if not l.startswith('#| '))
            parts.append(f"```python\n{code}\n```")
    return HEADER + '\n\n'.join(parts) + '\n'


if __name__ == '__main__':
    out = ROOT / 'README.md'
    text = render()
    if '--check' in sys.argv:
        sys.exit(0 if out.read_text(encoding='utf-8') == text else 'README.md is out of date: run python tools/readme.py')
    out.write_text(text, encoding='utf-8')
    print(f"wrote {out.relative_to(ROOT)}")
