"`ftnb` as a user runs it: a subprocess, exit codes, messages, files left behind."
import dataclasses, json, os, shlex, signal, subprocess, sys, time
from pathlib import Path
import pytest
from finetune_notebooks import cli

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


def config_flags(cls):
    "The flags a config dataclass should give its command, derived from its fields."
    return {'--' + f.name.replace('_', '-') for f in dataclasses.fields(cls)}


def test_help_everywhere():
    "Every command has --help; a method's (and read's) shows one flag per config field, with the field's help text."
    from finetune_notebooks.quickstart import BlatherConfig
    for cmd in [[], ['env'], ['read'], ['write'], ['bench'], ['loop'], *[[m] for m in METHODS]]:
        r = ftnb(*cmd, '--help')
        assert r.returncode == 0 and 'usage: ftnb' in r.stdout, (cmd, r.stderr)
        if not cmd or cmd[0] not in ('read', 'loop', *METHODS): continue
        cls = BlatherConfig if cmd[0] == 'read' else cli.config_class(cli.method_module(cmd[0]))
        shown = set(r.stdout.replace(',', ' ').replace('[', ' ').split())
        assert config_flags(cls) <= shown, (cmd, config_flags(cls) - shown)
        text = ' '.join(r.stdout.split())
        for name, help in cls.field_help().items(): assert ' '.join(help.split())[:40] in text, (cmd, name)
        for f in dataclasses.fields(cls):
            if f.type in (bool, 'bool'): assert f"--no-{f.name.replace('_', '-')}" in shown
        for common in ('--out', '--smoke', '--config', '--print-config', '--overwrite', *(['--resume'] if cmd[0] != 'read' else [])):
            assert common in shown, (cmd, common)


@pytest.mark.parametrize('argv, message', [
    (['classify', '--smoke', '--batch-size', '0'], '--batch-size: must be at least 1 (got 0)'),
    (['classify', '--smoke', '--epochs', '-1'], '--epochs: must be greater than 0 (got -1.0)'),
    (['classify', '--smoke', '--lr', 'fast'], "--lr: expected a number (got 'fast')"),
    (['lora', '--smoke', '--lora-r', '0'], '--lora-r: must be at least 1 (got 0)'),
    (['jokes', '--smoke', '--block-size', '1'], '--block-size: must be at least 2 (got 1)'),
    (['instruct', '--smoke', '--max-steps', '0'], '--max-steps: must be -1'),
    (['chat', '--smoke', '--precision', 'fp8'], '--precision: must be one of auto, fp32, bf16, fp16'),
    (['loop', '--smoke', '--epochs', '2.5'], "--epochs: expected a whole number (got '2.5')"),
    (['jokes', '--smoke', '--lrr', '1e-4'], 'unrecognized arguments: --lrr 1e-4 (did you mean --lr?)'),
    (['read', 'x.txt', '--smoke', '--epochs', '0'], '--epochs: must be greater than 0 (got 0.0)'),
])
def test_impossible_values_exit_2_before_anything_loads(argv, message, tmp_path, capsys):
    out = tmp_path / 'never'
    try: code = cli.main([*argv, '--out', str(out)])
    except SystemExit as e: code = e.code  # argparse's own errors
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f'ftnb: error: {message}') and err.count('\n') == 1, err
    assert not out.exists()


def test_fp16_on_a_cpu_is_refused_before_loading(tmp_path, capsys):
    import torch
    if torch.cuda.is_available(): pytest.skip('a GPU can train in fp16')
    assert cli.main(['classify', '--smoke', '--precision', 'fp16', '--out', str(tmp_path / 'x')]) == 2
    assert capsys.readouterr().err.startswith('ftnb: error: --precision fp16: fp16 training needs a CUDA GPU')


def test_print_config_and_config_files(tmp_path, capsys):
    "--print-config prints what a run would use; --config reads it back; flags override the file."
    assert cli.main(['jokes', '--smoke', '--lr', '1e-4', '--prompts', 'Hi', 'Why did', '--print-config']) == 0
    (tmp_path / 'run.yaml').write_text(capsys.readouterr().out)
    assert cli.main(['jokes', '--config', str(tmp_path / 'run.yaml'), '--max-steps', '2', '--print-config', 'json']) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg['lr'], cfg['prompts'], cfg['max_steps'], cfg['model']) == (1e-4, ['Hi', 'Why did'], 2, 'tiny-gpt2')
    (tmp_path / 'bad.yaml').write_text('learning_rate: 1\n')
    assert cli.main(['jokes', '--smoke', '--config', str(tmp_path / 'bad.yaml')]) == 2
    assert 'bad.yaml: learning_rate: unknown setting for JokesConfig; its settings are model, data' in capsys.readouterr().err


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / 'ftnb'
    r = subprocess.run([str(exe), '--help'], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0 and 'jokes' in r.stdout and 'bench' in r.stdout


def test_env_json():
    r = ftnb('env', '--json')
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report['device'] in ('cpu', 'cuda', 'mps') and report['precision'] in ('bf16', 'fp16', 'fp32')
    assert report['peak_gflops']['fp32'] > 0 and isinstance(report['cpu_flags'], list)  # this machine's own limit, measured
    assert set(report['peak_gflops']) == ({'fp32', 'bf16'} if report['cpu_bf16'] else {'fp32'}) or report['device'] != 'cpu'


def test_a_schedule_flag_keeps_the_schedule(capsys):
    "The overhead budget is the default; setting when to evaluate or save (a flag or the file) keeps that schedule as set."
    for argv, overhead in ((['jokes'], 0.1), (['jokes', '--eval-times', '9'], None), (['chat', '--eval-steps', '7'], None),
                           (['jokes', '--eval-times', '9', '--overhead', '0.3'], 0.3), (['jokes', '--overhead', 'none'], None)):
        assert cli.main([*argv, '--smoke', '--print-config', 'json']) == 0
        assert json.loads(capsys.readouterr().out)['overhead'] == overhead, argv
    assert cli.main(['jokes', '--smoke', '--no-compile', '--print-config', 'json']) == 0
    assert json.loads(capsys.readouterr().out)['compile'] is False


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
    assert r.returncode == 2 and "--epochs: expected a whole number (got '2.5')" in one_error_line(r)


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
    assert r.returncode == 2 and 'is not empty: replace it with --overwrite' in one_error_line(r)
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
    assert r.returncode == 2 and 'is not empty: replace it with --overwrite' in line and '--resume' not in line


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
    "Ctrl-C (SIGINT): a checkpoint, the exact command to continue, exit 130; that command says where it resumes and finishes."
    out, steps = tmp_path / 'run', 400
    cmd = [sys.executable, '-m', 'finetune_notebooks.cli', 'jokes', '--smoke', '--max-steps', str(steps), '--out', str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / 'checkpoints').glob('checkpoint-*')) and p.poll() is None:
        time.sleep(0.5)
    time.sleep(1)
    assert p.poll() is None, "the run finished before it could be interrupted: raise `steps`"
    p.send_signal(signal.SIGINT)
    log, _ = p.communicate(timeout=300)
    assert p.returncode == 130, log[-3000:]
    assert not (out / 'metrics.json').exists() and not (out / 'model').exists()
    stopped = next(l for l in log.splitlines() if l.startswith('Stopped at step'))
    step = int(stopped.split()[3])
    assert stopped == (f"Stopped at step {step} of {steps}: checkpoint saved in {out / 'checkpoints' / f'checkpoint-{step}'}. "
                       f"To continue: ftnb jokes --smoke --max-steps {steps} --out {out} --resume"), stopped
    again = shlex.split(stopped.split('To continue: ')[1])[1:]  # the printed command, as a user would paste it
    r = subprocess.run([sys.executable, '-m', 'finetune_notebooks.cli', *again], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f'Resuming from checkpoint-{step} (step {step} of {steps})' in r.stdout
    state = json.loads(max((out / 'checkpoints').glob('checkpoint-*/trainer_state.json'),
                           key=lambda p: int(p.parent.name.split('-')[1])).read_text())
    assert state['global_step'] == steps
    assert json.loads((out / 'metrics.json').read_text())['method'] == 'jokes'


def test_a_runaway_loss_exits_3_without_a_model(tmp_path):
    "The issue's check: lr 10000 on the smoke classifier. One line naming the step, the loss and the fix; no model, no metrics."
    out = tmp_path / 'X'
    r = ftnb('classify', '--smoke', '--lr', '10000', '--max-steps', '30', '--out', out)
    line = one_error_line(r)
    assert r.returncode == 3, r.stderr[-3000:]
    assert line.startswith('ftnb: error: training diverged at step ') and 'the loss' in line and 'lower the learning rate (--lr / lr=, now 10000)' in line
    assert not (out / 'model').exists() and not (out / 'metrics.json').exists()


def test_the_article_csv_in_smoke_and_offline_mode(tmp_path):
    "onelinefun.csv as article 001 downloads it (columns ID, Joke): no --text-column needed, in either mode."
    import csv as _csv, pyjokes
    csv = tmp_path / 'onelinefun.csv'
    with open(csv, 'w', newline='') as fh: _csv.writer(fh).writerows([('ID', 'Joke'), *enumerate(pyjokes.get_jokes()[:120])])
    r = ftnb('jokes', '--data', csv, '--smoke', '--out', tmp_path / 'smoke')
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / 'smoke' / 'metrics.json').read_text())['config']['data'] == str(csv)
    offline = {**ENV, 'HF_HUB_OFFLINE': '1'}; offline.pop('FTNB_SMOKE')
    r = subprocess.run([sys.executable, '-m', 'finetune_notebooks.cli', 'jokes', '--data', str(csv), '--max-steps', '2', '--max-new-tokens', '4',
                        '--out', str(tmp_path / 'offline')], capture_output=True, text=True, env=offline, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / 'offline' / 'metrics.json').read_text())
    assert m['config']['model'] == 'tiny-gpt2' and m['config']['epochs'] == 20.0  # the offline recipe, on the user's file


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
