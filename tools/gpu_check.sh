#!/usr/bin/env bash
# GPU check: on a CUDA machine, run every lesson notebook (10-16) in full mode against the loopback Hub and every
# `ftnb` command, then `ftnb bench --quick` (and the compile comparison), and print one table.
#
#   tools/gpu_check.sh                 # from the repository root, with a python that has CUDA torch and the package (pip install -e ".[dev]")
#   PYTHON=/path/to/python tools/gpu_check.sh --full     # also the full `ftnb bench` (GPT-2 124M; minutes on a GPU)
#   OUT=/tmp/gpu-check tools/gpu_check.sh --only 12_bert_imdb   # colab_sim's --only: a subset of notebooks/commands
#
# Unlike tools/fakehub/colab_sim.py this makes no venv and installs nothing (a GPU machine may have no internet, and a
# fresh venv would get pip's torch instead of the machine's CUDA build): it uses colab_sim's pieces (the loopback Hub,
# the full-mode environment, nbrun.py, the ftnb command list) with $PYTHON's own environment, where the package must
# already be installed. Everything goes to $OUT (default: a new temporary folder); the table is also $OUT/gpu_check.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${OUT:-$(mktemp -d /tmp/gpu-check-XXXXXX)}
FULL=0; ONLY=()
while [ $# -gt 0 ]; do
  case "$1" in
    --full) FULL=1 ;;
    --only) ONLY+=(--only "$2"); shift ;;
    *) echo "gpu_check.sh: unknown option $1 (use --full, --only ITEM)" >&2; exit 2 ;;
  esac; shift
done
mkdir -p "$OUT"
"$PYTHON" - <<'PY' || exit 2
import importlib.util, sys
missing = [m for m in ('torch', 'finetune_notebooks', 'nbclient', 'ipykernel', 'olah') if importlib.util.find_spec(m) is None]
if missing: sys.exit(f"gpu_check.sh: {sys.executable} lacks {', '.join(missing)}; install the package with pip install -e '.[dev]' (and CUDA torch)")
import torch
if not torch.cuda.is_available(): sys.exit(f"gpu_check.sh: torch {torch.__version__} sees no CUDA GPU here; run this on a GPU machine (nvidia-smi should list one)")
print(f"# {torch.cuda.get_device_name(0)}, capability {torch.cuda.get_device_capability(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
"$PYTHON" -m ipykernel install --prefix "$("$PYTHON" -c 'import sys; print(sys.prefix)')" --name ftnb-colab-sim > "$OUT/kernel.log" 2>&1
"$PYTHON" - "$OUT" "$FULL" "${ONLY[@]}" <<'PY'
import json, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, '.')
from tools.fakehub import hub_env, serve
from tools.fakehub import colab_sim as sim
out, full, only = Path(sys.argv[1]), sys.argv[2] == '1', [a for a in sys.argv[3:] if a != '--only']
for d in ('logs', 'executed', 'runs'): (out / d).mkdir(parents=True, exist_ok=True)
src = sim.snapshot(sim.CHECKOUT, out / 'src', 'worktree')
import shutil; shutil.rmtree(out / 'nbs', ignore_errors=True); shutil.copytree(src / 'nbs', out / 'nbs')
venv, rows = Path(sys.prefix), []  # this environment, with its CUDA torch, stands in for Colab's
with serve(log_dir=out / 'logs' / 'fakehub') as endpoint:
    env = sim.sim_env(venv, hub_env(endpoint, out / 'hf_home'))
    for nb in sim.method_notebooks(out / 'nbs'):
        if sim._selected(nb.stem, only): rows.append(sim.run_notebook(nb, venv, out, env, 1800)); print(sim.table(rows[-1:]).splitlines()[2], flush=True)
    sim.write_text_file(endpoint.files_url, out / 'jokes.txt')
    for name, args in sim.commands(out, out / 'jokes.txt').items():
        if sim._selected(name, only): rows.append(sim.run_command(name, args, venv, out, env, 1800)); print(sim.table(rows[-1:]).splitlines()[2], flush=True)
# the benchmark on the machine itself (random-weight architectures: no Hub needed), quick, and full with --full
benches = {'ftnb bench --quick': ['bench', '--quick', '--json', out / 'runs' / 'bench-quick.json']}
if full: benches['ftnb bench'] = ['bench', '--json', out / 'runs' / 'bench-full.json']
plain = {k: v for k, v in sim.sim_env(venv, {}).items()}
for name, args in benches.items():
    if sim._selected(name, only): rows.append(sim.run_command(name, args, venv, out, plain, 3600)); print(sim.table(rows[-1:]).splitlines()[2], flush=True)
code = "import json; from finetune_notebooks import bench as b; print(json.dumps([b.compile_gain(m, b.BenchConfig.quick() if m != 'jokes' else b.BenchConfig()) for m in b.METHODS]))"
t = time.monotonic(); r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=plain)
(out / 'runs' / 'compile.json').write_text(r.stdout); rows.append({'item': 'compile gain (jokes full, others quick)', 'ok': r.returncode == 0,
     'seconds': time.monotonic() - t, 'error': '' if r.returncode == 0 else (r.stderr.strip().splitlines() or [''])[-1][:300]})
lines = [sim.table(rows), '']
for f in ('bench-quick.json', 'bench-full.json'):
    p = out / 'runs' / f
    if not p.exists(): continue
    res = json.loads(p.read_text()); mc = res['machine']
    lines.append(f"{f}: {mc['device_name']}, precision {mc['precision']}, peak " + ', '.join(f'{k} {v:.0f}' for k, v in mc['peak_gflops'].items()) + ' GFLOP/s')
    lines.append(f"  {'method':9} {'baseline':>12} {'ours':>12} {'speedup':>8} {'ours MFU':>9} {'step MFU':>9} {'estimate err':>12}")
    for m in ('jokes', 'classify', 'instruct'):
        r_ = res[m]; k = r_['speedup_of']
        lines.append(f"  {m:9} {r_['baseline'][k]:12.1f} {r_['ours'][k]:12.1f} {r_['speedup']:8.2f} {r_['ours'].get('mfu', float('nan')):9.1%} "
                     f"{r_['ours'].get('step_mfu', float('nan')):9.1%} {r_['estimate_error']:12.0%}")
    lines.append('  targets: ' + '; '.join(f"{k} {'met' if v else 'n/a' if v is None else 'MISSED'}" for k, v in res['targets'].items()))
if (out / 'runs' / 'compile.json').read_text().strip():
    for c in json.loads((out / 'runs' / 'compile.json').read_text()):
        lines.append(f"compile {c['method']:9} {c['size']:6} step {c['eager_s']:.3f} -> {c['compiled_s']:.3f} s ({c['gain']:+.0%}), compile {c['compile_s']:.0f} s")
text = '\n'.join(lines); print(text); (out / 'gpu_check.txt').write_text(text + '\n')
print(f'# logs, executed notebooks and JSON in {out}')
sys.exit(0 if all(r['ok'] for r in rows) else 1)
PY
