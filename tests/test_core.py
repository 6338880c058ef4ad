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
    assert calls == ['https://hub.example/api/models/gpt2']
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
    with patch.object(core, 'cpu_flags', lambda: frozenset()):
        assert choose_precision('cpu', Model()).name == 'fp32'
