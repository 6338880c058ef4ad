"""Simulate Colab's "Run all" in full mode against the loopback Hub: every method notebook and every `ftnb` command.

    python tools/fakehub/colab_sim.py                       # fresh venv in a temp folder, everything (~15 min on 2 cores)
    python tools/fakehub/colab_sim.py --venv /tmp/sim-venv  # make or reuse that venv (the package itself is reinstalled)
    python tools/fakehub/colab_sim.py --only 12_bert_imdb --only 'ftnb classify'

1. A venv like Colab's: torch==2.13.0 (Colab has torch), Jupyter's kernel machinery (ipykernel, nbclient), then the
   package exactly as the notebooks' install cell says, the GitHub URL replaced by this checkout.
2. The loopback Hub (`tools.fakehub.serve`), and the environment of full mode: HF_ENDPOINT set, no FTNB_SMOKE/IN_TEST.
3. nbs/10..16 executed from copies, every cell but `#| eval: false` ones; then each `ftnb` command, each with a time limit.
4. One table: item, pass/fail, seconds, the first error (cell and exception). Exit status 1 if anything failed.
Run it with the dev venv's python (it needs olah for the server); the notebooks run in the simulated venv.
"""
from __future__ import annotations
import argparse, ast, csv, hashlib, json, os, re, shlex, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path

if __package__ in (None, ''): sys.path.insert(0, str(Path(__file__).resolve().parents[2])) # run as a script
from tools.fakehub import apply_env, hub_env, serve

CHECKOUT = Path(__file__).resolve().parents[2]
REPO_URL = 'github.com/finetune-notebooks/finetune-notebooks' # the install cells' GitHub URL
PACKAGE = 'finetune-notebooks'
KERNEL = 'ftnb-colab-sim' # a kernelspec of our own, so no user-level `python3` spec is picked up
COLAB_TOOLS = ['torch==2.13.0', 'ipykernel', 'nbclient', 'nbformat'] # what Colab has before the install cell runs
PIP_LINE = re.compile(r'^\s*[!%]\s*pip3?\s+install\s+(.+)$', re.M)
METHOD_NBS = re.compile(r'^1[0-6]_.*\.ipynb$') # the lesson notebooks with an install cell

# ---------------------------------------------------------------- the install cells

def install_cell(nb_path:Path) -> tuple|None:
    "(cell index, pip arguments) of the notebook's first `!pip install` cell, or None."
    nb = json.loads(nb_path.read_text(encoding='utf-8'))
    for i, cell in enumerate(nb['cells']):
        src = ''.join(cell['source']) if cell['cell_type'] == 'code' else ''
        if m := PIP_LINE.search(src): return i, shlex.split(m.group(1), comments=True)
    return None

def method_notebooks(nbs:Path=CHECKOUT / 'nbs') -> list: # a notebooks folder
    "The lesson notebooks 10-16, in order."
    return sorted(p for p in nbs.iterdir() if METHOD_NBS.match(p.name))

def requirement_extras(arg:str) -> tuple|None:
    "The extras an install argument asks of this package (`()` for none), or None if it is not this package's GitHub URL."
    if REPO_URL not in arg: return None
    m = re.match(r'^\s*[\w.-]+\s*\[([^\]]*)\]\s*@', arg) or re.search(r'#egg=[\w.-]+\[([^\]]*)\]', arg)
    return tuple(e.strip() for e in m.group(1).split(',') if e.strip()) if m else ()

def local_install_args(args:list, checkout:Path=CHECKOUT) -> list:
    "The install cell's pip arguments with this package's GitHub URL replaced by the local checkout (same extras)."
    out = []
    for a in args:
        extras = requirement_extras(a)
        out.append(a if extras is None else f"{PACKAGE}{'[' + ','.join(extras) + ']' if extras else ''} @ {checkout.as_uri()}")
    return out

def with_extras(args:list, extras:list) -> list:
    "The pip arguments with `extras` added to this package's requirement (to preview an install cell change)."
    def add(a):
        if PACKAGE not in a or '@' not in a: return a
        name, url = a.split('@', 1)
        have = re.findall(r'\[([^\]]*)\]', name)
        want = [e.strip() for e in (have[0].split(',') if have else []) if e.strip()] + [e for e in extras if e not in (have[0] if have else '')]
        return f"{PACKAGE}[{','.join(want)}] @{url}"
    return [add(a) for a in args] if extras else list(args)

def package_extras(checkout:Path=CHECKOUT) -> set:
    "The extras setup.py defines (the keys of its `extras_require` literal)."
    for node in ast.walk(ast.parse((checkout / 'setup.py').read_text(encoding='utf-8'))):
        if isinstance(node, ast.keyword) and node.arg == 'extras_require' and isinstance(node.value, ast.Dict):
            return {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    raise ValueError(f"{checkout / 'setup.py'}: no extras_require={{...}} literal found")

def common_install_args(nbs:Path=CHECKOUT / 'nbs') -> list:
    "The one pip command line every lesson notebook's install cell uses; ValueError naming the notebooks if they differ or one has none."
    cells = {p.name: install_cell(p) for p in method_notebooks(nbs)}
    if missing := [n for n, c in cells.items() if c is None]: raise ValueError(f"no `!pip install` cell in {', '.join(missing)}")
    lines = {n: c[1] for n, c in cells.items()}
    if len({tuple(v) for v in lines.values()}) > 1:
        raise ValueError('install cells differ: ' + '; '.join(f'{n}: pip install {shlex.join(v)}' for n, v in lines.items()))
    return next(iter(lines.values()))

# ---------------------------------------------------------------- the venv

def snapshot(checkout:Path, dest:Path, source:str='head') -> Path:
    "Copy the checkout to `dest` ('head': the last commit; 'worktree': tracked and untracked files as they are): pip builds there, not in the checkout."
    shutil.rmtree(dest, ignore_errors=True); dest.mkdir(parents=True)
    if source == 'head':
        archive = subprocess.run(['git', 'archive', '--format=tar', 'HEAD'], cwd=checkout, capture_output=True, check=True).stdout
        subprocess.run(['tar', '-x', '-C', str(dest)], input=archive, check=True)
        return dest
    names = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=checkout, capture_output=True, check=True).stdout
    for name in filter(None, names.decode().split('\0')):
        src = checkout / name
        if src.is_file(): (dest / name).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src, dest / name)
    return dest

def _pip(venv:Path, args:list, log) -> None:
    "Run pip of `venv`; raise with the log's name if it fails."
    log.write(f'\n$ pip install {shlex.join(args)}\n'); log.flush()
    r = subprocess.run([str(venv / 'bin' / 'python'), '-m', 'pip', 'install', '--disable-pip-version-check', *args],
                       stdout=log, stderr=subprocess.STDOUT)
    if r.returncode: raise RuntimeError(f"pip install {shlex.join(args)} failed (exit {r.returncode}); see {log.name}")

def make_venv(venv:Path, install_args:list, log) -> float:
    "Create (or reuse) the Colab-like venv and install the package as the install cell says; seconds taken."
    t = time.monotonic()
    marker = venv / '.colab-sim-tools'
    same_reqs = [a.split('@', 1)[0] for a in install_args] # the requirements, not where this checkout's snapshot lies
    want = hashlib.sha256(repr((COLAB_TOOLS, same_reqs)).encode()).hexdigest() # other requirements: a fresh venv, so nothing is left over
    if not (marker.exists() and marker.read_text() == want):
        subprocess.run([sys.executable, '-m', 'venv', '--clear', str(venv)], check=True, stdout=log, stderr=subprocess.STDOUT)
        _pip(venv, ['-q', *COLAB_TOOLS], log)
        subprocess.run([str(venv / 'bin' / 'python'), '-m', 'ipykernel', 'install', '--prefix', str(venv), '--name', KERNEL],
                       check=True, stdout=log, stderr=subprocess.STDOUT)
        marker.write_text(want)
    _pip(venv, [a for a in install_args if a not in ('-q', '--quiet')], log) # the install cell, as Colab runs it
    _pip(venv, ['--no-deps', '--force-reinstall', '-q', *[a for a in install_args if PACKAGE in a]], log) # this checkout's code, even if the version did not change
    return time.monotonic() - t

# ---------------------------------------------------------------- running items

def sim_env(venv:Path, hub:dict) -> dict:
    "The environment of a Colab runtime in full mode: the venv first on PATH, the loopback Hub, no smoke/test flags, no PYTHONPATH."
    env = apply_env(os.environ, {**hub, 'PYTHONPATH': None, 'VIRTUAL_ENV': str(venv), 'JUPYTER_PATH': str(venv / 'share' / 'jupyter'),
                                 'PATH': f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", 'MPLBACKEND': None,
                                 'PYTHONWARNINGS': None, 'FTNB_PRECISION': None, 'CUDA_VISIBLE_DEVICES': None})
    return env

def _run(cmd:list, env:dict, cwd:Path, timeout:float, log:Path) -> tuple:
    "(exit code or None on timeout, seconds) of `cmd` in its own process group, output to `log`; the group is killed on timeout."
    t = time.monotonic()
    with log.open('w') as f:
        f.write(f'$ {shlex.join(map(str, cmd))}\n'); f.flush()
        p = subprocess.Popen(list(map(str, cmd)), env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try: code = p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGTERM)
            try: p.wait(15)
            except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()
            code = None
    return code, time.monotonic() - t

ERROR_LINE = re.compile(r'^(ftnb: error: .*|[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b:?.*)$')

def first_error(log:Path) -> str:
    "The line that says what went wrong: `ftnb: error: ...`, else the last exception line, else the last line."
    lines = [l.rstrip() for l in log.read_text(errors='replace').splitlines() if l.strip()]
    for l in lines:
        if l.startswith('ftnb: error:'): return l
    excs = [l for l in lines if ERROR_LINE.match(l) and not l.startswith(('Traceback', 'The above', 'During handling'))]
    return (excs or lines or [''])[-1][:300]

def run_notebook(nb:Path, venv:Path, work:Path, env:dict, budget:float) -> dict:
    "Execute a copy of `nb` (in `work/nbs`) with the simulated venv's kernel; a result row."
    copy = work / 'nbs' / nb.name
    log, res_json = work / 'logs' / f'{nb.stem}.log', work / 'logs' / f'{nb.stem}.json'
    cmd = [venv / 'bin' / 'python', Path(__file__).with_name('nbrun.py'), copy, '--out', work / 'executed' / nb.name,
           '--json', res_json, '--kernel', KERNEL, '--budget', budget]
    code, secs = _run(cmd, env, copy.parent, budget + 120, log)
    if code is None or not res_json.exists():
        return {'item': nb.stem, 'ok': False, 'seconds': secs, 'error': 'timeout' if code is None else first_error(log), 'log': str(log)}
    r = json.loads(res_json.read_text())
    err = r['error'] and f"cell {r['error']['cell']}: {r['error']['exception']}" + (f"  [{r['error']['source']}]" if r['error'].get('source') else '')
    return {'item': nb.stem, 'ok': r['ok'], 'seconds': secs, 'error': err or '', 'log': str(work / 'executed' / nb.name)}

def run_command(name:str, args:list, venv:Path, work:Path, env:dict, timeout:float) -> dict:
    "Run `ftnb ARGS` from the simulated venv with a time limit; a result row."
    log = work / 'logs' / (re.sub(r'\W+', '_', name).strip('_') + '.log')
    code, secs = _run([venv / 'bin' / 'ftnb', *args], env, work, timeout, log)
    ok = code == 0
    err = '' if ok else (f'timeout after {timeout:.0f} s; ' if code is None else f'exit {code}; ') + first_error(log)
    return {'item': name, 'ok': ok, 'seconds': secs, 'error': err, 'log': str(log)}

def commands(work:Path, text_file:Path) -> dict:
    "Every `ftnb` command of full mode, by name: the training commands, read/write, the benchmark's --pretrained path."
    runs = work / 'runs'
    cmds = {f'ftnb {m}': [m, '--out', runs / m, '--overwrite'] for m in ('jokes', 'chat', 'classify', 'lora', 'instruct', 'loop')}
    cmds['ftnb read'] = ['read', text_file, '--out', runs / 'read', '--overwrite']
    cmds['ftnb write'] = ['write', 'Why did the programmer', '--model-dir', runs / 'read', '--n', '2', '--max-new-tokens', '20']
    cmds['ftnb bench --pretrained --smoke'] = ['bench', '--pretrained', '--smoke', '--json', runs / 'bench.json']
    cmds['ftnb env'] = ['env']
    return cmds

def write_text_file(endpoint_files:str, path:Path):
    "A one-example-per-line text file for `ftnb read`: the jokes CSV's Joke column, fetched from the loopback server."
    import io, urllib.request
    with urllib.request.urlopen(f'{endpoint_files}/onelinefun.csv', timeout=30) as r: rows = list(csv.DictReader(io.StringIO(r.read().decode())))
    path.write_text('\n'.join(r['Joke'] for r in rows) + '\n', encoding='utf-8')

# ---------------------------------------------------------------- the table

def table(rows:list) -> str:
    "One line per item: name, PASS/FAIL, seconds, first error."
    w = max([len(r['item']) for r in rows] + [4])
    out = [f"{'item':<{w}}  {'result':<6}  {'seconds':>7}  first error", '-' * (w + 40)]
    for r in rows: out.append(f"{r['item']:<{w}}  {'pass' if r['ok'] else 'FAIL':<6}  {r['seconds']:>7.0f}  {r['error']}")
    n_fail = sum(not r['ok'] for r in rows)
    out.append(f"{len(rows) - n_fail} passed, {n_fail} failed")
    return '\n'.join(out)

def _selected(name:str, only:list) -> bool: return not only or any(o == name or o in name.split() or name.startswith(o) for o in only)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--venv', type=Path, help='make or reuse the simulated Colab venv here (default: a new temporary one)')
    p.add_argument('--work', type=Path, help='folder for notebook copies, runs and logs (default: a new temporary one, kept)')
    p.add_argument('--only', action='append', default=[], help="run only these items, e.g. 12_bert_imdb, 'ftnb classify', or a prefix (repeatable)")
    p.add_argument('--nb-budget', type=float, default=900, help='seconds per notebook')
    p.add_argument('--cmd-timeout', type=float, default=600, help='seconds per ftnb command')
    p.add_argument('--json', type=Path, help='also write the rows here')
    p.add_argument('--extras', action='append', default=[], help="add this extra to the install cell's requirement (a preview; the table says so)")
    p.add_argument('--pip', action='append', default=[], help='also install this package in the venv (e.g. one Colab preinstalls; the table says so)')
    p.add_argument('--source', choices=['head', 'worktree'], default='head', help="what to install and run: the last commit (default) or the working tree as it is")
    a = p.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix='colab-sim-'))
    for d in ('logs', 'executed', 'runs'): (work / d).mkdir(parents=True, exist_ok=True)
    src = snapshot(CHECKOUT, work / 'src', a.source)
    shutil.rmtree(work / 'nbs', ignore_errors=True); shutil.copytree(src / 'nbs', work / 'nbs') # never write into nbs/
    venv = (a.venv or work / 'venv').absolute()  # items run in other folders: a relative --venv must not move with them
    rows = []
    try: install_args = with_extras(local_install_args(common_install_args(src / 'nbs'), src), a.extras) + a.pip
    except ValueError as e: print(f'colab_sim: {e}', file=sys.stderr); return 2
    with (work / 'logs' / 'venv.log').open('a') as log:
        try: secs = make_venv(venv, install_args, log); rows.append({'item': 'venv + install cell', 'ok': True, 'seconds': secs, 'error': ''})
        except (RuntimeError, subprocess.CalledProcessError) as e:
            rows.append({'item': 'venv + install cell', 'ok': False, 'seconds': 0, 'error': str(e)}); print(table(rows)); return 1
    print(f'# venv {venv}; pip install {shlex.join(install_args)}; work {work}', flush=True)
    with serve(log_dir=work / 'logs' / 'fakehub') as endpoint:
        env = sim_env(venv, hub_env(endpoint, work / 'hf_home'))
        for nb in method_notebooks(src / 'nbs'):
            if _selected(nb.stem, a.only):
                rows.append(run_notebook(nb, venv, work, env, a.nb_budget)); print(table(rows[-1:]).splitlines()[2], flush=True)
        write_text_file(endpoint.files_url, work / 'jokes.txt')
        for name, args in commands(work, work / 'jokes.txt').items():
            if _selected(name, a.only):
                rows.append(run_command(name, args, venv, work, env, a.cmd_timeout)); print(table(rows[-1:]).splitlines()[2], flush=True)
    print(); print(table(rows)); print(f'# logs and executed notebooks in {work}')
    if a.extras or a.pip: print(f'# NOT the install cell as written: --extras {a.extras} --pip {a.pip} were added')
    if a.json: a.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r['ok'] for r in rows) else 1

if __name__ == '__main__': sys.exit(main())
