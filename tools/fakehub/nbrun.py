"""Execute one notebook top to bottom in a Jupyter kernel, as Colab's "Run all" does; report JSON.

Run by `colab_sim.py` with the simulated Colab venv's python (it needs nbclient and ipykernel there):

    python nbrun.py NOTEBOOK --out EXECUTED.ipynb --json RESULT.json --kernel NAME --budget SECONDS

Every code cell runs, whatever its `#| hub` / `#| slow` / `#| gpu` flags, except `#| eval: false` cells
(pip install, push_to_hub), which Colab users skip or which need credentials. Stops at the first error.
"""
import argparse, json, re, sys, time
from pathlib import Path

SKIP = re.compile(r'^\s*#\|\s*eval\s*:\s*false\s*$', re.M) # nbdev's directive for cells that must never run in tests

def first_line(text:str) -> str: return next((l.strip() for l in str(text).splitlines() if l.strip()), '')

def run(path:Path, out:Path, kernel:str, budget:float, cell_timeout:float) -> dict:
    "Execute the code cells of `path` in order; a dict: ok, seconds, cells run, skipped, and the first error (cell, exception)."
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name=kernel, allow_errors=False, record_timing=True,
                            resources={'metadata': {'path': str(path.parent)}})
    res = {'ok': True, 'cells_run': 0, 'skipped': [], 'error': None, 'cell_seconds': {}}
    start = time.monotonic()
    try:
        with client.setup_kernel():
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != 'code': continue
                if SKIP.search(cell.source): res['skipped'].append(i); continue
                if time.monotonic() - start > budget:
                    res.update(ok=False, error={'cell': i, 'exception': f'TimeoutError: notebook budget of {budget:.0f} s spent before this cell'}); break
                t = time.monotonic()
                try: client.execute_cell(cell, i)
                except CellExecutionError as e:
                    res.update(ok=False, error={'cell': i, 'exception': f'{e.ename}: {first_line(e.evalue)}', 'source': first_line(_code(cell.source))}); break
                except (CellTimeoutError, DeadKernelError) as e:
                    res.update(ok=False, error={'cell': i, 'exception': f'{type(e).__name__}: {first_line(e)}', 'source': first_line(_code(cell.source))}); break
                finally: res['cell_seconds'][i] = round(time.monotonic() - t, 1)
                res['cells_run'] += 1
    except Exception as e: # the kernel did not start, etc.
        res.update(ok=False, error={'cell': None, 'exception': f'{type(e).__name__}: {first_line(e)}'})
    res['seconds'] = round(time.monotonic() - start, 1)
    nbformat.write(nb, out)
    return res

def _code(source:str) -> str:
    "The source without nbdev directives, for naming the failing line."
    return '\n'.join(l for l in source.splitlines() if not l.lstrip().startswith('#|'))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebook', type=Path)
    p.add_argument('--out', type=Path, required=True, help='where to write the executed notebook')
    p.add_argument('--json', type=Path, required=True, help='where to write the result')
    p.add_argument('--kernel', default='python3')
    p.add_argument('--budget', type=float, default=1800, help='seconds for the whole notebook')
    p.add_argument('--cell-timeout', type=float, default=1200, help='seconds for one cell')
    a = p.parse_args(argv)
    res = run(a.notebook, a.out, a.kernel, a.budget, a.cell_timeout)
    a.json.write_text(json.dumps(res, indent=1))
    return 0 if res['ok'] else 1

if __name__ == '__main__': sys.exit(main())
