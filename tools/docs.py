"""Prepare the docs site without Quarto: the part of `nbdev_docs` that CI can run.

`nbdev_proc_nbs` would first try to download Quarto, which cannot be installed
here, so this calls the same steps directly: write nbs/nbdev.yml from
settings.ini, then process every notebook into _proc/ (show_doc, directives,
frontmatter). With Quarto installed, `cd _proc && quarto render` (or plain
`nbdev_docs`) builds the site from that folder.
"""
from pathlib import Path
import yaml
from nbdev.config import get_config
from nbdev.quarto import refresh_quarto_yml
from nbdev.serve import proc_nbs


def sidebar_entries(quarto_yml: Path) -> list:
    "Every page listed in the sidebar of `quarto_yml`."
    def walk(items):
        for it in items:
            if isinstance(it, str): yield it
            elif isinstance(it, dict): yield from walk(it.get('contents', []))
    return list(walk(yaml.safe_load(quarto_yml.read_text())['website']['sidebar']['contents']))


def check_sidebar(root: Path) -> list:
    "Problems with the sidebar: notebooks missing from it, entries with no notebook."
    listed = set(sidebar_entries(root / '_quarto.yml'))
    present = {p.name for p in (root / 'nbs').glob('*.ipynb')}
    return [f"{n} is not in the _quarto.yml sidebar" for n in sorted(present - listed)] + \
           [f"sidebar entry {n} has no notebook in nbs/" for n in sorted(listed - present)]


def main():
    cfg = get_config()
    root = cfg.config_path
    problems = check_sidebar(root)
    if problems: raise SystemExit('docs: ' + '; '.join(problems))
    refresh_quarto_yml()
    cache = proc_nbs(cfg.nbs_path, n_workers=2, force=True)
    pages = sorted(p.name for p in cache.glob('*.ipynb'))
    print(f"docs: processed {len(pages)} notebooks into {cache.relative_to(root)}; run `quarto render` there to build the site")


if __name__ == '__main__': main()
