"`ftnb` as a user runs it: a subprocess, exit codes, messages, files left behind."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'FTNB_SMOKE': '1', 'MPLBACKEND': 'Agg', 'PYTHONUNBUFFERED': '1'}
METHODS = ['jokes', 'chat', 'classify', 'lora', 'instruct']


def ftnb(*args, timeout=600, **kw):
    "Run `ftnb args` and return the CompletedProcess."
    return subprocess.run([sys.executable, '-m', 'finetune_notebooks.cli', *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=timeout, cwd=kw.get('cwd', ROOT))


def one_error_line(r):
    "The last stderr line, checked to be an `ftnb: error:` line without a traceback."
    assert 'Traceback' not in r.stderr, r.stderr[-3000:]
    return r.stderr.strip().splitlines()[-1]


def test_help_everywhere():
    for cmd in [[], ['env'], ['read'], ['write'], ['bench'], ['loop'], *[[m] for m in METHODS]]:
        r = ftnb(*cmd, '--help')
        assert r.returncode == 0 and 'usage: ftnb' in r.stdout, (cmd, r.stderr)


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / 'ftnb'
    r = subprocess.run([str(exe), '--help'], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0 and 'jokes' in r.stdout and 'bench' in r.stdout


def test_env_json():
    r = ftnb('env', '--json')
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report['device'] in ('cpu', 'cuda', 'mps') and report['precision'] in ('bf16', 'fp16', 'fp32')


@pytest.mark.parametrize('method', METHODS)
def test_every_method_in_smoke_mode(method, tmp_path):
    out = tmp_path / method
    r = ftnb(method, '--smoke', '--out', out)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / 'metrics.json').read_text())
    for key in ('method', 'model', 'device', 'precision', 'train_loss', 'train_runtime_s', 'estimated_runtime_s',
                'train_tokens', 'tokens_per_s', 'padding_fraction'):
        assert key in m, f"{method}: metrics.json lacks {key}"
    assert m['method'] == method and (out / 'loss.png').stat().st_size > 0
    assert 'Writing model shards' not in r.stderr  # train.QuietSaves: no bar per checkpoint
    assert list((out / 'model').glob('*.safetensors')), f"{method}: no safetensors in {out/'model'}"
    assert not list((out / 'model').glob('*.bin'))


def test_loop_in_smoke_mode(tmp_path):
    r = ftnb('loop', '--smoke', '--out', tmp_path / 'loop')
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / 'loop' / 'metrics.json').read_text())
    assert m['method'] == 'loop' and m['eval_loss'] < m['eval_loss_before']
    for k in ('train_loss', 'train_runtime_s', 'estimated_runtime_s', 'train_tokens', 'tokens_per_s', 'padding_fraction', 'device', 'precision'):
        assert m[k] is not None, k  # the same keys the Trainer methods write
    assert (tmp_path / 'loop' / 'model' / 'model.safetensors').exists()
    r = ftnb('loop', '--smoke', '--epochs', '2.5', '--out', tmp_path / 'loop2')
    assert r.returncode == 2 and 'loop counts whole epochs: got 2.5' in one_error_line(r)


def test_bench_smoke_writes_every_figure(tmp_path):
    r = ftnb('bench', '--smoke', '--json', tmp_path / 'bench.json')
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / 'bench.json').read_text())
    for m in ('jokes', 'classify', 'instruct'):
        for arm in ('baseline', 'ours'):
            for k in ('useful_tokens_per_s', 'examples_per_s', 'wall_s', 'peak_rss_mb', 'padding_fraction', 'eval_metric'):
                assert k in res[m][arm], (m, arm, k)
        assert res[m]['speedup'] > 0 and res[m]['estimate_error'] >= 0
    assert res['article001_projected_minutes'] > 0
    assert {'batched_tokens_per_s', 'single_tokens_per_s'} <= set(res['generation'])
    assert {'device', 'precision', 'threads'} <= set(res)
    r = ftnb('bench', '--smoke', '--json', tmp_path)
    assert r.returncode == 2 and 'is a folder' in one_error_line(r)


def test_bench_pretrained_without_the_hub_says_so(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'finetune_notebooks.cli', 'bench', '--smoke', '--pretrained', '--json', str(tmp_path / 'b.json')],
                       capture_output=True, text=True, env={**ENV, 'HF_HUB_OFFLINE': '1'}, timeout=600, cwd=ROOT)
    assert r.returncode == 2 and 'Hugging Face Hub' in one_error_line(r) and 'drop --pretrained' in one_error_line(r)
    assert not (tmp_path / 'b.json').exists()


def test_existing_out_is_not_overwritten(tmp_path):
    (tmp_path / 'keep.txt').write_text('a good model')
    r = ftnb('classify', '--smoke', '--out', tmp_path)
    assert r.returncode == 2 and 'is not empty: pass --overwrite' in one_error_line(r)
    assert (tmp_path / 'keep.txt').read_text() == 'a good model'


@pytest.mark.parametrize('name, content, message', [
    ('missing.csv', None, 'missing.csv'),
    ('empty.csv', b'', 'empty'),
    ('binary.csv', bytes(range(256)) * 8, 'binary'),
    ('wrong.csv', b'review,stars\ngreat film,1\nawful,0\n', "columns found"),
])
def test_bad_data_gets_one_line_and_exit_2(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None: path.write_bytes(content)
    r = ftnb('classify', '--smoke', '--data', path, '--out', tmp_path / 'out')
    assert r.returncode == 2, r.stderr[-3000:]
    line = one_error_line(r)
    assert line.startswith('ftnb: error:') and message in line and name in line, line
    assert not (tmp_path / 'out' / 'model').exists()


@pytest.mark.parametrize('content, message', [
    (b'{"prompt": "hi", "answer": "hello"}\n', "no column 'messages'"),
    (b'{"messages": "hello"}\n{"messages": "hi"}\n', "must hold lists of {'role'"),
    (b'{"messages": [\n', 'could not read as json'),
])
def test_bad_chat_file_gets_one_line_and_exit_2(tmp_path, content, message):
    path = tmp_path / 'chats.jsonl'; path.write_bytes(content)
    r = ftnb('chat', '--smoke', '--data', path, '--out', tmp_path / 'out')
    line = one_error_line(r)
    assert r.returncode == 2 and message in line and 'chats.jsonl' in line, line
    assert not (tmp_path / 'out' / 'model').exists()


def test_read_rejects_bad_files(tmp_path):
    (tmp_path / 'empty.txt').write_text('')
    (tmp_path / 'blob.txt').write_bytes(b'\x00\x01\x02' * 100)
    for f, msg in [('nope.txt', 'no such file'), ('empty.txt', 'empty'), ('blob.txt', 'binary')]:
        r = ftnb('read', tmp_path / f, '--smoke', '--out', tmp_path / 'm')
        assert r.returncode == 2 and msg in one_error_line(r), r.stderr[-2000:]
    (tmp_path / 'm').mkdir(); (tmp_path / 'm' / 'keep.txt').write_text('x')
    r = ftnb('read', tmp_path / 'empty.txt', '--smoke', '--out', tmp_path / 'm')
    line = one_error_line(r)
    assert r.returncode == 2 and 'is not empty: pass --overwrite' in line and '--resume' not in line


def test_write_needs_a_model_dir(tmp_path):
    r = ftnb('write', 'hello', '--model-dir', tmp_path)
    assert r.returncode == 2 and 'holds no saved model' in one_error_line(r)


def test_read_then_write(tmp_path):
    text = tmp_path / 'tale.txt'
    text.write_text('The tortoise walked on slowly.\nThe hare slept under a tree.\nSlow and steady wins the race.\n' * 5)
    r = ftnb('read', text, '--smoke', '--out', tmp_path / 'm')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'Estimated training time' in r.stdout + r.stderr
    r = ftnb('write', 'The hare', '--model-dir', tmp_path / 'm', '--n', '2', '--max-new-tokens', '8')
    assert r.returncode == 0, r.stderr[-3000:]
    assert len([l for l in r.stdout.splitlines() if l.strip()]) >= 2


def test_interrupted_run_resumes_to_completion(tmp_path):
    out, steps = tmp_path / 'run', 400
    cmd = [sys.executable, '-m', 'finetune_notebooks.cli', 'jokes', '--smoke', '--max-steps', str(steps), '--out', str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / 'checkpoints').glob('checkpoint-*')) and p.poll() is None:
        time.sleep(0.5)
    time.sleep(1)
    assert p.poll() is None, "the run finished before it could be interrupted: raise `steps`"
    p.send_signal(signal.SIGTERM)
    log, _ = p.communicate(timeout=300)
    assert p.returncode == 130, log[-3000:]
    assert '--resume' in log
    assert not (out / 'metrics.json').exists()
    r = ftnb('jokes', '--smoke', '--max-steps', steps, '--out', out, '--resume')
    assert r.returncode == 0, r.stderr[-3000:]
    state = json.loads(max((out / 'checkpoints').glob('checkpoint-*/trainer_state.json'),
                           key=lambda p: int(p.parent.name.split('-')[1])).read_text())
    assert state['global_step'] == steps
    assert json.loads((out / 'metrics.json').read_text())['method'] == 'jokes'


def test_interrupted_loop_resumes_to_completion(tmp_path):
    "The hand-written loop (no Trainer) stops the same way: SIGTERM, a checkpoint, exit 130, then --resume."
    out, steps = tmp_path / 'loop', 200
    cmd = [sys.executable, '-m', 'finetune_notebooks.cli', 'loop', '--smoke', '--max-steps', str(steps), '--out', str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / 'checkpoints').exists() and p.poll() is None: time.sleep(0.2)
    assert p.poll() is None, "the run finished before it could be interrupted: raise `steps`"
    p.send_signal(signal.SIGTERM)
    log, _ = p.communicate(timeout=300)
    assert p.returncode == 130 and '--resume' in log, log[-3000:]
    assert not (out / 'metrics.json').exists() and not (out / 'model').exists()
    r = ftnb('loop', '--smoke', '--max-steps', steps, '--out', out, '--resume')
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out / 'metrics.json').read_text())['steps'] == steps


@pytest.mark.parametrize('method', METHODS)
def test_two_process_torchrun(tmp_path, method):
    "Every Trainer-based command under torchrun: two CPU processes over gloo, one writer."
    out = tmp_path / 'ddp'
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '-m',
                        'finetune_notebooks.cli', method, '--smoke', '--out', str(out)],
                       capture_output=True, text=True, env=ENV, timeout=900, cwd=ROOT)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    m = json.loads((out / 'metrics.json').read_text())
    assert m['method'] == method and m['world_size'] == 2
    assert not list(out.glob('.*tmp*')), 'a temporary model folder was left behind'
