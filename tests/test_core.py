"Slower or environment-touching checks of finetune_notebooks.core (the notebook holds the quick ones)."
import os, time
from unittest.mock import patch
import torch
from finetune_notebooks import core
from finetune_notebooks.core import estimate_train_time, Timer, set_seed, choose_precision, precision_for


def _mlp_step():
    "A real training step of a small MLP on a fixed regression problem."
    set_seed(0)
    X = torch.randn(256, 64); Y = X @ torch.randn(64, 1)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 1))
    opt = torch.optim.SGD(mlp.parameters(), lr=0.01)
    def step():
        loss = torch.nn.functional.mse_loss(mlp(X), Y)
        opt.zero_grad(); loss.backward(); opt.step()
        return loss.item()
    return step


def _one_attempt():
    "Estimate a run from a few steps, then run it; return (estimated, actual) seconds."
    step = _mlp_step()
    probe = estimate_train_time(step, 1, warmup_steps=3, timed_steps=10)
    n = max(20, int(1.5 / max(probe.seconds_per_step, 1e-5)))  # aim for ~1.5 s of training
    est = estimate_train_time(step, n, warmup_steps=2, timed_steps=10)
    with Timer() as t:
        for _ in range(n): step()
    return est.total_seconds, t.elapsed


def test_estimate_within_factor_two_of_a_real_run():
    # one thread: the machine is shared, and thread contention is the main source of noise.
    # Up to three attempts, so a burst of load from other processes does not fail the test;
    # a systematically wrong estimate (warm-up counted, wrong division) fails all three.
    threads = torch.get_num_threads(); torch.set_num_threads(1)
    ratios = []
    try:
        for _ in range(3):
            est, actual = _one_attempt()
            ratios.append(actual / est)
            if 0.5 <= ratios[-1] <= 2.0: break
    finally: torch.set_num_threads(threads)
    assert 0.5 <= ratios[-1] <= 2.0, f'actual/estimated time ratios {ratios}, want one within 0.5..2'


def test_hub_probe_is_cached_per_endpoint():
    core._probe.cache_clear()
    calls = []
    def fake_urlopen(req, timeout):
        calls.append(req.full_url); raise OSError('no network')
    env = {'HF_HUB_OFFLINE': '', 'HF_ENDPOINT': 'https://hub.example'}
    with patch.dict(os.environ, env), patch('urllib.request.urlopen', fake_urlopen):
        assert core.hub_reachable() is False
        assert core.hub_reachable() is False
    assert calls == ['https://hub.example/api/models/openai-community/gpt2']
    core._probe.cache_clear()


def test_hub_offline_env_wins_over_a_reachable_hub():
    class Ok:
        status = 200
        def __enter__(self): return self
        def __exit__(self, *a): pass
    core._probe.cache_clear()
    with patch('urllib.request.urlopen', lambda req, timeout: Ok()):
        with patch.dict(os.environ, {'HF_HUB_OFFLINE': '', 'FTNB_SMOKE': '', 'IN_TEST': ''}):
            assert core.hub_reachable() is True
            assert core.run_mode() == 'full'
        with patch.dict(os.environ, {'HF_HUB_OFFLINE': '1', 'FTNB_SMOKE': '', 'IN_TEST': ''}):
            assert core.run_mode() == 'offline'
    core._probe.cache_clear()


def test_bf16_autocast_runs_a_backward_pass_on_cpu():
    prec = precision_for('cpu', cpu_flags={'avx512_bf16'})
    lin = torch.nn.Linear(8, 2)
    with prec.autocast('cpu'): out = lin(torch.randn(4, 8))
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert lin.weight.grad.dtype == torch.float32  # weights and grads stay fp32


def test_choose_precision_reads_model_type_from_a_model():
    class Cfg: model_type = 't5'
    class Model: config = Cfg()
    with patch.object(core, 'cpu_flags', lambda: frozenset()), patch.dict(os.environ, {'FTNB_PRECISION': ''}):
        assert choose_precision('cpu', Model()).name == 'fp32'


# ---- plots (the layer above core; its quick checks live in nbs/01_plots.ipynb) ----
import matplotlib
matplotlib.use('Agg')  # tests only: the notebooks display inline
import matplotlib.pyplot as plt
from finetune_notebooks.plots import plot_losses, plot_lr, plot_token_lengths, plot_confusion


def test_plots_in_a_loop_leave_no_open_figures(tmp_path):
    hist = [{'loss': 1.0 / s, 'learning_rate': 1e-3, 'step': s} for s in range(1, 6)]
    for i in range(25):
        plot_losses(hist, path=tmp_path / f'a{i}.png'); plot_lr(hist)
        plot_token_lengths([3, 4, 5], max_length=4); plot_confusion([0, 1], [1, 1], ['n', 'p'])
    assert plt.get_fignums() == []
    assert len(list(tmp_path.glob('*.png'))) == 25


def test_each_plot_saves_a_png_in_a_new_folder(tmp_path):
    hist = [{'loss': 2.0, 'step': 1}, {'loss': 1.0, 'learning_rate': 1e-4, 'step': 2}]
    calls = {'losses': lambda p: plot_losses(hist, path=p), 'lr': lambda p: plot_lr(hist, path=p),
             'lengths': lambda p: plot_token_lengths([1, 2, 30], max_length=8, path=p),
             'confusion': lambda p: plot_confusion([0, 1, 1], [0, 1, 0], ['a', 'b'], path=p)}
    for name, f in calls.items():
        p = tmp_path / 'deep' / name / 'fig.png'
        fig = f(p)
        assert p.stat().st_size > 1000 and p.read_bytes()[:4] == b'\x89PNG', name
        assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel(), name


def test_plot_losses_reads_a_real_trainer_log(tmp_path):
    "A real (tiny) Trainer run: its log_history has the keys plot_losses expects, tokens included."
    from torch import nn
    from transformers import Trainer, TrainingArguments
    class M(nn.Module):
        def __init__(self): super().__init__(); self.emb = nn.Embedding(10, 2)
        def forward(self, input_ids, labels=None):
            logits = self.emb(input_ids).mean(1)
            return {'loss': nn.functional.cross_entropy(logits, labels), 'logits': logits}
    class DS(torch.utils.data.Dataset):
        def __len__(self): return 32
        def __getitem__(self, i): return {'input_ids': torch.tensor([i % 10] * 4), 'labels': torch.tensor(i % 2)}
    args = TrainingArguments(str(tmp_path), use_cpu=True, max_steps=8, per_device_train_batch_size=4, logging_steps=2,
                             eval_strategy='steps', eval_steps=4, include_num_input_tokens_seen=True,
                             report_to=[], save_strategy='no', disable_tqdm=True)
    tr = Trainer(model=M(), args=args, train_dataset=DS(), eval_dataset=DS())
    tr.train()
    fig = plot_losses(tr.state.log_history, x='tokens')
    lines = {l.get_label(): l for l in fig.axes[0].lines}
    assert set(lines) == {'training', 'validation'}
    assert len(lines['training'].get_xdata()) == 4 and len(lines['validation'].get_xdata()) == 2
    assert max(lines['training'].get_xdata()) == 8 * 4 * 4  # steps x batch x tokens per example
    assert len(plot_lr(tr).axes[0].lines[0].get_xdata()) == 4  # a Trainer works as the history too


def test_an_http_error_answer_still_means_the_hub_is_there():
    import urllib.error
    def answer(code):
        def fake(req, timeout): raise urllib.error.HTTPError(req.full_url, code, 'x', {}, None)
        return fake
    for code, want in [(429, True), (503, False)]:
        core._probe.cache_clear()
        with patch.dict(os.environ, {'HF_HUB_OFFLINE': ''}), patch('urllib.request.urlopen', answer(code)):
            assert core.hub_reachable() is want, code
    core._probe.cache_clear()
