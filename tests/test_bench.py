"Benchmark: JSON schema of a tiny run, padding-share and article-001 projection arithmetic (no timing asserts)."
import json, math
from dataclasses import replace

import pytest
import torch

from finetune_notebooks import bench
from finetune_notebooks.metrics import batch_positions, count_positions, padding_share
from finetune_notebooks.bench import (ARTICLE001, METHODS, BenchConfig, estimate_error, keep_eos, limit_minutes, method_result,
                                      project_minutes, speedup, targets_met)
from finetune_notebooks.models import load_model

ARM_KEYS = {'useful_tokens_per_s', 'examples_per_s', 'wall_s', 'peak_rss_mb', 'padding_fraction', 'eval_metric', 'mfu', 'step_mfu',
            'flops_per_s', 'step_useful_tokens_per_s', 'estimated_s'}


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('bench') / 'out' / 'bench.json'
    res = bench.run_bench(BenchConfig.tiny(), out, verbose=False)
    return res, json.loads(out.read_text())


def test_json_schema(tiny_run):
    res, saved = tiny_run
    for m in ('jokes', 'classify', 'instruct'):
        for arm in ('baseline', 'ours'):
            assert ARM_KEYS <= set(saved[m][arm]), (m, arm)
            assert all(isinstance(saved[m][arm][k], (int, float)) for k in ARM_KEYS)
            assert 0 <= saved[m][arm]['padding_fraction'] < 1
            assert saved[m][arm]['examples'] == BenchConfig.tiny().n_train[m] # same examples in both arms
        assert saved[m]['speedup'] > 0 and saved[m]['estimate_error'] >= 0
        assert saved[m]['baseline']['precision'] == 'fp32' and saved[m]['baseline']['attention'] == 'eager'
        assert saved[m]['ours']['attention'] == 'sdpa' and saved[m]['ours']['optimizer'] == 'adamw_torch_fused'
    assert 0 <= saved['classify']['ours']['eval_metric'] <= 1 # accuracy
    assert saved['article001_projected_minutes'] > 0
    assert saved['generation']['batched_tokens_per_s'] > 0 and saved['generation']['single_tokens_per_s'] > 0
    assert {'device', 'precision', 'threads'} <= set(saved) and saved['threads'] >= 1
    met = targets_met(res)
    assert set(met) == set(saved['targets']) == set(saved['target_notes']) == {'jokes speedup', 'classify speedup', 'instruct speedup',
                                                                               'classify accuracy', 'gpt2 step mfu', 'estimates'}
    assert met['gpt2 step mfu'] is None # the tiny GPT-2 says nothing about the article's 124M
    assert saved['article001_limit_minutes'] > 0 and saved['machine']['peak_gflops']['fp32'] > 0
    assert all(0 < saved[m][arm]['mfu'] <= saved[m][arm]['step_mfu'] * 1.5 for m in METHODS for arm in ('baseline', 'ours'))
    assert all(saved[m]['ours']['estimate_line'].startswith('Estimated training time') for m in METHODS)
    for k in saved['gaps']: assert saved['targets'][k] is False  # a gap only for a missed target


def test_json_key_set(tiny_run):
    "Every key the issue names is in the written JSON of the tiny config."
    _, saved = tiny_run
    assert {'jokes', 'classify', 'instruct', 'article001_projected_minutes', 'generation', 'device', 'precision', 'threads'} <= set(saved)
    for m in METHODS:
        assert {'baseline', 'ours', 'speedup', 'estimate_error'} <= set(saved[m]), m
        for arm in ('baseline', 'ours'): assert ARM_KEYS <= set(saved[m][arm]), (m, arm)
    assert {'batched_tokens_per_s', 'single_tokens_per_s'} <= set(saved['generation'])
    assert isinstance(saved['device'], str) and saved['precision'] in ('bf16', 'fp16', 'fp32')


def test_padding_is_lower_for_ours(tiny_run):
    _, saved = tiny_run
    for m in METHODS: assert saved[m]['ours']['padding_fraction'] < saved[m]['baseline']['padding_fraction'], m
    # packed jokes: the only padding is the tail of the last block in each batch
    assert saved['jokes']['ours']['padding_fraction'] < 0.3 < saved['jokes']['baseline']['padding_fraction']


def test_padding_arithmetic():
    ids = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    b = {'input_ids': ids, 'attention_mask': (ids != 0).long()}
    assert batch_positions(b) == (4, 8)
    assert padding_share(*batch_positions(b)) == 0.5
    assert batch_positions({'input_ids': ids}, pad_token_id=0) == (4, 8) # no mask: the pad id decides
    s2s = {**b, 'labels': torch.tensor([[3, -100], [3, 3]])}  # decoder positions count too
    assert batch_positions(s2s) == (4 + 3, 8 + 4)
    assert count_positions([b, b, b]) == (12, 24)
    assert padding_share(0, 0) == 0.0


def test_projection_and_ratios():
    tokens = ARTICLE001['examples'] * ARTICLE001['tokens_per_example'] * ARTICLE001['epochs']
    assert tokens == 600_000
    assert math.isclose(project_minutes(tokens / 60 / 45), 45) # exactly 45 min at that rate
    assert math.isclose(project_minutes(200, examples=100, tokens_per_example=12, epochs=10), 1.0)
    with pytest.raises(ValueError, match='positive tokens/s'): project_minutes(-1)
    assert math.isclose(speedup({'k': 9.0}, {'k': 3.0}, 'k'), 3.0) and speedup({'k': 1}, {}, 'k') is None
    assert math.isclose(estimate_error(80, 100), 0.2) and estimate_error(1, 0) is None


def test_split_refuses_too_many():
    with pytest.raises(ValueError, match='lower n_train/n_eval'):
        bench._split(bench.joke_dataset(), 10_000, 10, 42)


def test_targets_accuracy_is_one_sided():
    "Higher classification accuracy than the baseline is never a miss; more than 1 point lower beyond the noise is; within the noise: cannot tell."
    arm = lambda v, metric: {'useful_tokens_per_s': v, 'examples_per_s': v, 'eval_metric': metric, 'estimate_error': 0.05, 'precision': 'fp32', 'step_mfu': 0.75}
    res = {m: {'baseline': arm(1.0, 0.70), 'ours': arm(8.0, 0.70), 'speedup': 8.0, 'estimate_error': 0.05} for m in METHODS}
    res['article001_model'] = 'GPT-2 124M'
    assert all(targets_met(res).values())
    res['classify']['ours']['eval_metric'] = 0.80
    assert targets_met(res)['classify accuracy']
    res['classify'].update(accuracy_difference=-0.015, accuracy_difference_se=0.001)
    assert targets_met(res)['classify accuracy'] is False
    res['classify'].update(accuracy_difference=-0.015, accuracy_difference_se=0.01)
    assert targets_met(res)['classify accuracy'] is None
    res['jokes']['speedup'] = 6.9
    assert not targets_met(res)['jokes speedup']  # 7x on an fp32 CPU
    res['jokes']['ours']['precision'] = 'bf16'; res['jokes']['speedup'] = 7.5
    assert not targets_met(res)['jokes speedup'] and targets_met(res)['gpt2 step mfu'] is None  # 8x with bf16; the fp32 MFU target n/a


def test_jokes_keep_one_eos_and_use_ftnb_jokes_split():
    assert keep_eos([7, 8, 0], 128) == [7, 8, 0] and keep_eos(list(range(10)) + [0], 4) == [0, 1, 2, 0]
    split = bench.joke_split(BenchConfig())
    assert (len(split['train']), len(split['test'])) == (255, 28)  # exactly what `ftnb jokes` trains and evaluates on offline


def test_mfu_and_limit_arithmetic():
    "MFU is FLOP/s over the peak of the arm's precision; the limit is the workload at 100% of the peak."
    arm = dict(flops_per_s=50e9, step_flops_per_s=75e9, precision='fp32', estimate_error=0.1, useful_tokens_per_s=1.0, examples_per_s=1.0)
    r = method_result('classify', arm, {**arm, 'precision': 'bf16'}, peak={'fp32': 100e9, 'bf16': 300e9})
    assert math.isclose(r['baseline']['mfu'], 0.5) and math.isclose(r['baseline']['step_mfu'], 0.75) and math.isclose(r['ours']['mfu'], 50 / 300)
    assert math.isclose(limit_minutes(756_076_032, 115e9), 600_000 * 756_076_032 / 115e9 / 60)


def test_pretrained_needs_the_hub(monkeypatch):
    monkeypatch.setattr(bench, 'hub_reachable', lambda *a, **kw: False)
    with pytest.raises(bench.ModelUnavailable, match='gpt2 and google/flan-t5-small.*Colab.*drop --pretrained'):
        bench.run_bench(replace(BenchConfig.tiny(), pretrained=True), verbose=False)


def test_pretrained_loads_the_named_weights(tmp_path, monkeypatch):
    "With `pretrained`, GPT-2 and T5 come from the named folders (here: saved tiny models standing in for the Hub's)."
    folders = {}
    for method, name, task in (('jokes', 'tiny-gpt2', 'causal-lm'), ('instruct', 'tiny-t5', 'seq2seq')):
        model, tok = load_model(name, task)
        with torch.no_grad(): next(model.parameters()).add_(0.5)  # unlike any fresh random init
        model.save_pretrained(tmp_path / name); tok.save_pretrained(tmp_path / name); folders[method] = str(tmp_path / name)
    monkeypatch.setattr(bench, 'PRETRAINED', folders)
    for method, name in (('jokes', 'tiny-gpt2'), ('instruct', 'tiny-t5')):
        want, _ = load_model(folders[method], 'causal-lm' if method == 'jokes' else 'seq2seq')
        got, _ = bench.bench_model(method, 'tiny', 'eager', pretrained=True)
        assert all(torch.equal(a, b) for a, b in zip(want.state_dict().values(), got.state_dict().values())), method
        assert got.config._attn_implementation == 'eager'
    r = bench.run_arm('jokes', 'ours', replace(BenchConfig.tiny(), pretrained=True), out_dir=tmp_path / 'arm')
    assert r['steps'] >= 1 and r['eval_metric'] > 0


def test_isolated_child_exits_cleanly(tmp_path):
    "An arm in a spawned child: its result comes back, and no leaked-semaphore warning reaches stderr at exit."
    import subprocess, sys
    script = tmp_path / 'iso.py'
    script.write_text("from dataclasses import replace\nfrom finetune_notebooks import bench\n"
                      "if __name__ == '__main__':\n"
                      "    r = bench.isolated('run_arm', 'classify', 'ours', cfg=replace(bench.BenchConfig.tiny(), isolate=True))\n"
                      "    print('examples', r['examples'])\n")
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"examples {BenchConfig.tiny().n_train['classify']}" in p.stdout
    assert 'resource_tracker' not in p.stderr, p.stderr[-2000:]


def test_compile_gain_times_both_ways_and_restores_the_model(monkeypatch):
    "compile_gain: eager and compiled step times on one batch, the compile time, and the blocks eager again after (compilation stubbed: it takes a minute)."
    calls = []
    monkeypatch.setattr(bench, 'compile_blocks', lambda m: calls.append('compile') or 2)
    monkeypatch.setattr(bench, 'uncompile_blocks', lambda m: calls.append('uncompile'))
    g = bench.compile_gain('jokes', BenchConfig.tiny(), steps=2)
    assert calls == ['compile', 'uncompile']
    assert {'method', 'size', 'device', 'blocks', 'steps', 'eager_s', 'compiled_s', 'gain', 'compile_s'} <= set(g)
    assert (g['method'], g['size'], g['steps'], g['blocks']) == ('jokes', 'tiny', 2, 2)
    assert g['eager_s'] > 0 and g['compiled_s'] > 0 and g['compile_s'] >= 0
    assert math.isclose(g['gain'], 1 - g['compiled_s'] / g['eager_s'])


def test_article001_limit_is_at_the_peak_of_ours_precision():
    "With fp32 forced on a bf16 machine, the limit line divides by the fp32 peak and says so (it once printed the bf16 one)."
    res = dict(machine=dict(peak_gflops={'fp32': 224.0, 'bf16': 949.0}, device_name='AMD EPYC', cpu_flags=['avx2'], load_average=[0.5]),
               jokes=dict(ours=dict(precision='fp32', peak_gflops=224.0)), article001_model='GPT-2 124M', article001_projected_minutes=42.0,
               article001_limit_minutes=34.0, article001_limit_multiple=1.25, article001_projected_minutes_baseline=275.0)
    line = bench.article001_line(res)
    assert '1.25x the physical limit of 34 min (100% of the fp32 peak, 224 GFLOP/s)' in line and '949' not in line
