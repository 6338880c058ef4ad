"End-to-end checks of the hand-written loop: run() layout, Ctrl-C + resume equals a straight run, generation vs model.generate."
import itertools, json, math
from dataclasses import replace
import pytest, torch
import finetune_notebooks.loop as loop
from finetune_notebooks.core import set_seed
from finetune_notebooks.data import DataError
from finetune_notebooks.loop import (LoopConfig, generate_for_keywords, generate_ids_until_eos, generate_until_eos,
                                     load_checkpoint, train_loop)
from finetune_notebooks.models import load_model
from finetune_notebooks.train import TrainingDiverged

METHOD = 'loop'  # the session's smoke run (tests/conftest.py); tests/test_runs.py checks what every method writes

def test_run_layout_and_metrics(smoke_run):
    out, m = smoke_run
    assert {p.name for p in out.iterdir()} >= {'metrics.json', 'loss.png', 'model', 'checkpoints', 'sentences.txt'}
    saved = json.loads((out / 'metrics.json').read_text())
    assert saved['steps'] == LoopConfig.smoke().max_steps and saved['model'] == 'tiny-gpt2'
    assert saved['eval_loss'] < saved['eval_loss_before']
    assert [s['prompt'] for s in saved['samples']] == list(LoopConfig.smoke().keywords)
    assert saved['train_tokens'] > 0 and saved['tokens_per_s'] > 0 and saved['estimated_runtime_s'] > 0
    assert 0 < saved['padding_fraction'] < 1  # sentences of different lengths, padded to the longest in each batch
    assert saved['device'] == 'cpu' and saved['precision'] in ('fp32', 'bf16') and saved['config']['max_steps'] == saved['steps']
    assert saved['perplexity'] == pytest.approx(math.exp(saved['eval_loss']))

def test_summary_row_counts_the_batches_trained_on(tmp_path):
    cfg = replace(LoopConfig.smoke(), max_steps=3)
    model, tok = load_model(cfg.model)
    hist = train_loop(cfg, model, tok, tmp_path)
    s, steps = hist[-1], [h for h in hist if 'loss' in h]
    train_dl, _ = loop.make_loaders(cfg, tok, tmp_path)
    train_dl.generator.manual_seed(cfg.seed)  # train_loop reseeds the order each epoch: these are the 3 batches it trained on
    batches = list(itertools.islice(iter(train_dl), 3))
    assert s['train_tokens'] == sum(int(b['attention_mask'].sum()) for b in batches)
    assert s['padding_fraction'] == pytest.approx(1 - s['train_tokens'] / sum(b['attention_mask'].numel() for b in batches))
    assert s['train_loss'] == pytest.approx(sum(h['loss'] for h in steps) / 3) and not s['interrupted'] and s['step'] == 3

def test_saved_model_matches_checkpoint_and_samples(smoke_run):
    out, m = smoke_run
    model, tok = load_model(str(out / 'model'))
    ckpt_model, _ = load_model('tiny-gpt2')
    assert load_checkpoint(out / 'checkpoints', ckpt_model)['step'] == LoopConfig.smoke().max_steps
    for a, b in zip(model.state_dict().values(), ckpt_model.state_dict().values()): assert torch.equal(a, b)
    assert generate_for_keywords(model, tok, LoopConfig.smoke()) == [s['after training'] for s in m['samples']]

def test_a_runaway_loss_stops_the_loop_without_a_new_checkpoint(tmp_path, capsys):
    "The loop watches its loss as the Trainer methods do (`train.LossRule`): lr 30 diverges; the last good checkpoint stays."
    cfg = replace(LoopConfig.smoke(), lr=30.0, warmup=0.0, max_steps=40, save_every=1, eval_every=100)
    with pytest.raises(TrainingDiverged, match=r'training diverged at step \d+: .*lower the learning rate \(--lr / lr=, now 30\)'):
        train_loop(cfg, *load_model(cfg.model), tmp_path)
    state = load_checkpoint(tmp_path / 'checkpoints', load_model(cfg.model)[0])
    losses = [h['loss'] for h in state['history'] if 'loss' in h]
    assert losses and all(math.isfinite(x) and x < 2 * losses[0] for x in losses)  # saved before the loss ran away


def test_resume_says_where_it_starts(tmp_path, capsys):
    cfg = LoopConfig.smoke()
    train_loop(cfg, *load_model(cfg.model), tmp_path, stop_after=2)
    train_loop(cfg, *load_model(cfg.model), tmp_path, resume=True)
    assert f'Resuming from checkpoints (step 2 of {cfg.max_steps})' in capsys.readouterr().out

def _losses(history): return [(h['step'], h.get('loss', h.get('eval_loss'))) for h in history if 'loss' in h or 'eval_loss' in h]

def test_ctrl_c_saves_and_resume_continues_exactly(tmp_path, monkeypatch):
    cfg = LoopConfig.smoke()
    set_seed(0); straight = train_loop(cfg, *load_model(cfg.model), tmp_path / 'a')
    real_step, calls = loop.train_step, [0]
    def interrupted(*a, **kw):
        calls[0] += 1
        if calls[0] == 4 + 3: raise KeyboardInterrupt  # 4 steps of the time estimate, then 2 real steps, then Ctrl-C
        return real_step(*a, **kw)
    monkeypatch.setattr(loop, 'train_step', interrupted)
    set_seed(0); first = train_loop(cfg, *load_model(cfg.model), tmp_path / 'b')
    monkeypatch.setattr(loop, 'train_step', real_step)
    assert max(h['step'] for h in first) == 2 and first[-1]['interrupted'] and first[-1]['step'] == 2
    set_seed(5); resumed = train_loop(cfg, *load_model(cfg.model), tmp_path / 'b', resume=True)
    assert [s for s, _ in _losses(resumed)] == [s for s, _ in _losses(straight)]
    for (_, x), (_, y) in zip(_losses(resumed), _losses(straight)): assert x == pytest.approx(y, abs=1e-4)

def test_rng_fork_restores_the_cpu_state():
    state = torch.get_rng_state()
    with loop.rng_fork('cpu'): torch.rand(5)
    assert torch.equal(torch.get_rng_state(), state)

def test_rng_fork_saves_and_restores_the_gpu_state_too(monkeypatch):
    "On a GPU the model's device has its own random state (dropout, sampling): it must be forked with the CPU's (issue 10)."
    calls = []
    monkeypatch.setattr(torch.cuda, 'get_rng_state', lambda device='cuda': calls.append(('get', torch.device(device))) or torch.zeros(8, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, 'set_rng_state', lambda state, device='cuda': calls.append(('set', torch.device(device))))
    with loop.rng_fork(torch.device('cuda', 0)): pass
    assert calls == [('get', torch.device('cuda', 0)), ('set', torch.device('cuda', 0))]

def test_estimate_and_sampling_fork_the_models_device(monkeypatch):
    "estimate_loop_time and generate_for_keywords fork the random state of the device the model is on, not only the CPU's."
    devices, real = [], loop.rng_fork
    monkeypatch.setattr(loop, 'rng_fork', lambda device: devices.append(torch.device(device)) or real(device))
    cfg = LoopConfig.smoke()
    model, tok = load_model(cfg.model)
    from datasets import Dataset
    dl = loop.make_loader(loop.tokenize_sentences(Dataset.from_dict({'text': loop.make_sentences(8)}), tok), tok, 4)  # no generator of its own
    state = torch.get_rng_state()
    loop.estimate_loop_time(model, dl, loop.Precision('fp32'), steps=5, lr=1e-3, timed_steps=1)
    generate_for_keywords(model, tok, cfg)
    assert devices == [model.device, model.device]
    assert torch.equal(torch.get_rng_state(), state)  # nothing drew from the global generator, not even the loader's seed

def test_resume_without_checkpoint_says_so(tmp_path):
    cfg = LoopConfig.smoke()
    with pytest.raises(FileNotFoundError, match='no checkpoint here'): train_loop(cfg, *load_model(cfg.model), tmp_path, resume=True)

def test_user_file_and_bad_file(tmp_path):
    good = tmp_path / 'mine.txt'; good.write_text('\n'.join(f'Line number {i} is about Kyoto.' for i in range(40)))
    cfg = replace(LoopConfig.smoke(), data=str(good), max_steps=2)
    hist = train_loop(cfg, *load_model(cfg.model), tmp_path / 'run')
    assert max(h['step'] for h in hist) == 2 and not (tmp_path / 'run' / 'sentences.txt').exists()
    empty = tmp_path / 'empty.txt'; empty.write_text('\n\n')
    with pytest.raises(DataError, match='empty.txt'): train_loop(replace(cfg, data=str(empty)), *load_model(cfg.model), tmp_path / 'r2')

@pytest.mark.parametrize('prompt', ['', 'Tokyo is', 'Many tourists visit'])
def test_greedy_equals_model_generate(prompt):
    model, tok = load_model('tiny-gpt2')
    model.eval()  # model.generate keeps the training mode; dropout would change its choices
    ids = tok(prompt or tok.eos_token, return_tensors='pt')['input_ids']
    ref = model.generate(ids, do_sample=False, max_new_tokens=15, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    ours = generate_ids_until_eos(model, ids, 15, tok.eos_token_id)
    assert not model.training  # the mode is left as it was
    assert ours == ref[0, ids.shape[1]:].tolist()
    assert generate_until_eos(model, tok, prompt, 15) == tok.decode(ours, skip_special_tokens=True)

def test_sampling_respects_top_k():
    model, tok = load_model('tiny-gpt2')
    logits = torch.randn(200, len(tok))
    picks = loop.next_token(logits, top_k=3, temperature=0.7)
    top3 = logits.topk(3, dim=-1).indices
    assert (top3 == picks[:, None]).any(-1).all()

def test_fp16_step_uses_the_grad_scaler():
    "The T4 path: fp16 autocast with an enabled GradScaler (run here on the CPU, which has fp16 autocast too)."
    cfg = LoopConfig.smoke()
    model, tok = load_model(cfg.model)
    from finetune_notebooks.core import Precision
    from finetune_notebooks.loop import make_loader, make_optimizer, make_scheduler, tokenize_sentences, train_step
    from datasets import Dataset
    batch = next(iter(make_loader(tokenize_sentences(Dataset.from_dict({'text': ['Tokyo is big.', 'Kyoto is old.']}), tok), tok, 2)))
    fp16 = Precision('fp16')
    scaler = fp16.grad_scaler('cpu')
    assert scaler.is_enabled()
    opt = make_optimizer(model, 1e-3); sched = make_scheduler(opt, 10, 0.0)
    before = model.transformer.h[0].mlp.c_fc.weight.detach().clone()
    loss = train_step(model, batch, opt, sched, fp16, scaler)
    assert math.isfinite(loss) and scaler.get_scale() > 1  # a finite loss; the loss was scaled
    assert not torch.equal(before, model.transformer.h[0].mlp.c_fc.weight)  # the step was taken
