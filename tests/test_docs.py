"The docs config is one file, lists every notebook, and the Quarto-free processing step works."
import os, subprocess, sys
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
import docs


def test_one_quarto_config():
    link = ROOT / 'nbs' / '_quarto.yml'
    assert link.is_symlink() and link.resolve() == (ROOT / '_quarto.yml').resolve()
    cfg = yaml.safe_load((ROOT / '_quarto.yml').read_text())
    assert cfg['project']['type'] == 'website'
    sections = [s['section'] for s in cfg['website']['sidebar']['contents']]
    assert sections[:3] == ['Start', 'Methods', 'Helpers']


def test_sidebar_lists_every_notebook():
    assert docs.check_sidebar(ROOT) == []


def test_check_sidebar_reports_a_missing_page(tmp_path):
    (tmp_path / 'nbs').mkdir()
    (tmp_path / 'nbs' / '00_a.ipynb').write_text('{}')
    (tmp_path / '_quarto.yml').write_text("website:\n  sidebar:\n    contents:\n      - section: S\n        contents: [01_b.ipynb]\n")
    assert docs.check_sidebar(tmp_path) == ['00_a.ipynb is not in the _quarto.yml sidebar',
                                            'sidebar entry 01_b.ipynb has no notebook in nbs/']


def test_notebooks_process_for_the_docs_site():
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'docs.py')], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    proc = ROOT / '_proc'
    assert (proc / '_quarto.yml').exists() and (proc / 'index.ipynb').exists()
    assert len(list(proc.glob('*.ipynb'))) == len(list((ROOT / 'nbs').glob('*.ipynb')))


def test_importing_the_package_does_not_import_nbdev():
    code = ("import sys, pkgutil, importlib, finetune_notebooks as f\n"
            "mods = [m.name for m in pkgutil.iter_modules(f.__path__) if m.name != '_modidx']\n"
            "[importlib.import_module('finetune_notebooks.' + m) for m in mods]\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('nbdev', 'execnb'))\n"
            "assert not bad, bad\nprint(len(mods))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.strip()) >= 1


def test_github_workflows_test_and_deploy():
    wf = ROOT / '.github' / 'workflows'
    test, deploy = (yaml.safe_load((wf / f).read_text()) for f in ('test.yaml', 'deploy.yaml'))
    runs = ' '.join(s.get('run', '') for s in test['jobs']['test']['steps'])
    assert runs.index('torch==2.13.0') < runs.index('pip install -e ".[dev]"')  # the CPU wheel before the package
    assert 'nbdev_test' in runs and 'pytest -q tests' in runs and 'nbdev_export' in runs
    assert 'nbdev_docs' in ' '.join(s.get('run', '') for s in deploy['jobs']['deploy']['steps'])
