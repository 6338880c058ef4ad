"End-to-end checks of the training layer (train, estimate, metrics, runs) on the offline tiny models (seconds on a CPU)."
import json, math, os, signal
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import DataCollatorForLanguageModeling, DataCollatorWithPadding, TrainerCallback

from finetune_notebooks.core import Precision
from finetune_notebooks.data import joke_dataset, sentiment_dataset
from finetune_notebooks.models import load_model
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments
from finetune_notebooks.estimate import TrainerEstimate, estimate_trainer_time, total_train_steps
from finetune_notebooks.metrics import accuracy, batch_positions, exact_match, f1, padding_fraction, rouge
from finetune_notebooks.runs import OutputExists, save_atomic, write_run
from finetune_notebooks.train import (LossWatchdog, TrainingDiverged, last_checkpoint, make_trainer, train_with_estimate,
                                      training_args, training_kwargs)


@pytest.fixture(scope='module')
def gpt2():
    model, tok = load_model('tiny-gpt2')
    jokes = joke_dataset().select(range(48))
    ds = jokes.map(lambda b: tok(b['text'], truncation=True, max_length=48), batched=True, remove_columns=['text'])
    return model, tok, ds, DataCollatorForLanguageModeling(tok, mlm=False)


def test_old_names_and_defaults(tmp_path, capsys):
    kw = training_kwargs(tmp_path, precision=Precision('fp32'), warmup_ratio=0.1, no_cuda=True, save_safetensors=True)
    assert (kw['warmup_steps'], kw['use_cpu'], 'save_safetensors' in kw) == (0.1, True, False)
    out = capsys.readouterr().out
    assert 'warmup_ratio=0.1 → warmup_steps=0.1' in out and 'save_safetensors dropped' in out
    assert training_kwargs(tmp_path, precision=Precision('bf16'))['bf16'] is True
    with pytest.raises(TypeError, match="unknown argument 'num_epochs'"): training_args(tmp_path, num_epochs=1)


def test_estimate_restores_weights_and_counts_steps(gpt2, tmp_path):
    model, tok, ds, coll = gpt2
    # 48 examples / batch 5 = 10 batches; accumulation 3 -> ceil(10/3) = 4 optimizer steps per epoch
    args = training_args(tmp_path, per_device_train_batch_size=5, gradient_accumulation_steps=3, num_train_epochs=2.5,
                         save_strategy='no')
    t = make_trainer(model, tok, args, ds, collator=coll)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    est = estimate_trainer_time(t, warmup_steps=1, timed_steps=2)
    assert est.total_steps == total_train_steps(t) == math.ceil(2.5 * 4)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert est.seconds_per_step > 0 and est.total_seconds == pytest.approx(est.seconds_per_step * est.total_steps)


def test_one_shape_run_is_timed_once_after_its_warm_up(gpt2, tmp_path, monkeypatch):
    "A batch picked for timing that has the warm-up's shape is stepped once more, not twice: it has no first call to count."
    import finetune_notebooks.estimate as estimate_mod
    model, tok, ds, _ = gpt2
    coll = DataCollatorForLanguageModeling(tok, mlm=False, pad_to_multiple_of=64)  # 48 jokes / batch 8: six 8 x 64 batches, one shape
    args = training_args(tmp_path, per_device_train_batch_size=8, num_train_epochs=10, save_strategy='no')  # 60 steps
    t = make_trainer(model, tok, args, ds, collator=coll)
    calls, loss, warm = [], t.compute_loss, []
    t.compute_loss = lambda *a, **kw: calls.append(1) or loss(*a, **kw)
    real = estimate_mod.warm_up
    monkeypatch.setattr(estimate_mod, 'warm_up', lambda *a, **kw: warm.append(len(r := real(*a, **kw))) or r)
    est = estimate_trainer_time(t)
    # at least three warm-up steps (the second can be the slowest on a CPU); the batches picked for timing (3 at 60 steps)
    # have the warm-up's shape, so each runs once more (no first call to time): before, each ran twice
    assert est.total_steps == 60 and warm[0] >= 3 and len(calls) == warm[0] + 3, (warm, len(calls))


def test_train_save_reload_and_record(gpt2, tmp_path, capsys):
    model, tok, ds, coll = gpt2
    args = training_args(tmp_path / 'checkpoints', max_steps=6, per_device_train_batch_size=8, learning_rate=1e-3)
    t = make_trainer(model, tok, args, ds, collator=coll)
    loader = t.get_train_dataloader()
    pad, useful = padding_fraction(loader), sum(batch_positions(b)[0] for b in loader)
    assert 0 < pad < 1 and useful == sum(len(x) for x in ds['input_ids'])
    m = train_with_estimate(t)
    said = capsys.readouterr().out
    assert said.index('Estimated training time') < said.index('train loss') < said.index('Training completed in')  # estimate, table, time
    assert "{'loss'" not in said  # no raw log dicts
    assert t.state.global_step == 6 and m['interrupted'] is False and math.isfinite(m['train_loss'])
    assert 0 < m['train_tokens'] <= useful and m['tokens_per_s'] > 0 and m['examples'] == len(ds)
    saved = save_atomic(t.model, tok, tmp_path / 'model')
    reloaded, tok2 = load_model(str(saved))
    assert torch.equal(reloaded.transformer.wte.weight, t.model.transformer.wte.weight.cpu())
    assert tok2.pad_token == tok.pad_token
    write_run(tmp_path, m, t.state.log_history)
    assert json.loads((tmp_path / 'metrics.json').read_text())['train_tokens'] == m['train_tokens']
    assert (tmp_path / 'loss.png').exists()


def test_save_atomic_targets(gpt2, tmp_path):
    model, tok, *_ = gpt2
    (tmp_path / 'file').write_text('x')
    with pytest.raises(OutputExists, match='is a file'): save_atomic(model, tok, tmp_path / 'file')
    with pytest.raises(OutputExists, match='is a file'): save_atomic(model, tok, tmp_path / 'file', overwrite=True)
    (tmp_path / 'empty').mkdir()
    save_atomic(model, None, tmp_path / 'empty')  # an empty folder is fine; no tokenizer is fine
    assert (tmp_path / 'empty' / 'model.safetensors').exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['empty', 'file']


class Kill(TrainerCallback):
    "Send `sig` to this process at steps in `at`."
    def __init__(self, sig, at): self.sig, self.at = sig, at
    def on_step_end(self, args, state, control, **kw):
        if state.global_step in self.at: os.kill(os.getpid(), self.sig)


def test_second_ctrl_c_aborts(gpt2, tmp_path):
    model, tok, ds, coll = gpt2
    args = training_args(tmp_path, max_steps=6, per_device_train_batch_size=4, save_strategy='no', disable_tqdm=True)
    t = make_trainer(model, tok, args, ds, collator=coll, callbacks=[Kill(signal.SIGINT, {2}), Kill(signal.SIGINT, {2})])
    old = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt): t.train()
    assert signal.getsignal(signal.SIGINT) is old  # handlers restored even when aborting


def test_resume_with_seq_cls(tmp_path, capsys):
    model, tok = load_model('tiny-bert', task='seq-cls', num_labels=2)
    data = sentiment_dataset(n_per_class=16)['train'].map(lambda b: tok(b['text'], truncation=True, max_length=32), batched=True)
    args = training_args(tmp_path, max_steps=5, per_device_train_batch_size=4, save_strategy='no', disable_tqdm=True)
    t = make_trainer(model, tok, args, data, collator=DataCollatorWithPadding(tok), callbacks=[Kill(signal.SIGTERM, {2})])
    assert train_with_estimate(t)['interrupted'] and t.state.global_step == 2
    assert Path(last_checkpoint(tmp_path)).name == 'checkpoint-2'
    model2, _ = load_model('tiny-bert', task='seq-cls', num_labels=2)
    t2 = make_trainer(model2, tok, args, data, collator=DataCollatorWithPadding(tok))
    assert train_with_estimate(t2, resume=True)['interrupted'] is False and t2.state.global_step == 5
    assert 'Resuming from checkpoint-2 (step 2 of 5)' in capsys.readouterr().out


def test_metrics_by_hand():
    p, r = [0, 1, 2, 2, 1, 0, 1], [0, 2, 2, 1, 1, 0, 0]
    assert accuracy(p, r) == pytest.approx(4 / 7)
    # macro F1: label 0 (tp 2, fp 0, fn 1) 0.8; label 1 (tp 1, fp 2, fn 1) 0.4; label 2 (tp 1, fp 1, fn 1) 0.5
    assert f1(p, r, average='macro') == pytest.approx((0.8 + 0.4 + 0.5) / 3)
    assert f1([1, 0, 1, 1, 0], [1, 1, 0, 1, 0]) == pytest.approx(2 / 3)
    assert exact_match([' a', 'b'], ['a', 'c']) == 0.5


def test_rouge_corpus_average():
    # identical pair scores 1 everywhere (case and punctuation ignored); disjoint pair scores 0 -> mean 0.5
    s = rouge(['the cat sat', 'dog'], ['The cat sat!', 'bird'])
    assert s == pytest.approx({'rouge1': 0.5, 'rouge2': 0.5, 'rougeL': 0.5})
    assert rouge(['running cats'], ['run cat']) == {'rouge1': 0.0, 'rouge2': 0.0, 'rougeL': 0.0}  # no stemming, as evaluate's default


def test_estimate_counts_evaluations_and_checkpoints(gpt2, tmp_path):
    model, tok, ds, coll = gpt2
    # 48 examples / batch 8 = 6 steps per epoch, 2 epochs = 12 steps; eval every 5 steps + the last; save every ceil(12/4)=3
    args = training_args(tmp_path, per_device_train_batch_size=8, per_device_eval_batch_size=8, num_train_epochs=2,
                         eval_strategy='steps', eval_steps=5, save_steps=0.25, train_sampling_strategy='group_by_length')
    t = make_trainer(model, tok, args, ds.map(lambda e: {'length': len(e['input_ids'])}), ds, collator=coll)
    torch.manual_seed(3); rng = torch.get_rng_state()
    est = estimate_trainer_time(t)
    assert isinstance(est, TrainerEstimate) and (est.total_steps, est.evaluations, est.saves) == (12, 3, 4)
    assert est.seconds_per_eval > 0 and est.seconds_per_save > 0 and torch.equal(torch.get_rng_state(), rng)
    assert est.total_seconds == pytest.approx(12 * est.seconds_per_step + 3 * est.seconds_per_eval + 4 * est.seconds_per_save)
    assert '3 evaluations' in str(est) and '4 checkpoints' in str(est) and t.state.log_history == []
    assert not list(tmp_path.glob('checkpoint-*'))  # the timed checkpoint went to a temporary folder


def test_metrics_take_numpy_arrays():
    p, r = np.array([1, 0, 1, 1]), np.array([1, 1, 1, 0])  # what a compute_metrics gets from the Trainer
    assert accuracy(p, r) == 0.5 and f1(p, r) == pytest.approx(2 / 3)
    assert exact_match(np.array(['a ', 'b']), np.array(['a', 'c'])) == 0.5
    with pytest.raises(ValueError, match='non-empty'): accuracy(np.array([]), np.array([]))


def test_seq2seq_eval_loss_is_the_token_mean(tmp_path):
    "instruct's Seq2SeqTrainer through make_trainer: eval_loss is the mean over all labelled tokens, whatever the batching."
    model, tok = load_model('tiny-t5', task='seq2seq')
    rng = np.random.default_rng(0)
    rows = [{'input_ids': tok(f'say {i}').input_ids, 'labels': tok(' '.join(['word'] * int(rng.integers(1, 12)))).input_ids} for i in range(10)]
    from datasets import Dataset
    ds, coll = Dataset.from_list(rows), DataCollatorForSeq2Seq(tok, model=model, label_pad_token_id=-100)
    args = Seq2SeqTrainingArguments(**training_kwargs(tmp_path, per_device_eval_batch_size=3, save_strategy='no'))
    t = make_trainer(model, tok, args, ds, ds, collator=coll, trainer_cls=Seq2SeqTrainer)
    eval_loss = t.evaluate()['eval_loss']
    # by hand after the Trainer's evaluation: it sets config.use_cache=False, which moves T5's loss by ~2e-4 relative
    model.eval(); total = count = 0
    with torch.no_grad():
        for i in range(0, 10, 3):
            b = coll(rows[i:i + 3]); n = int((b['labels'] != -100).sum())
            total += model(**b).loss.item() * n; count += n
    assert eval_loss == pytest.approx(total / count, rel=1e-5)
    batch_mean = float(np.mean([model(**coll(rows[i:i + 3])).loss.item() for i in range(0, 10, 3)]))
    assert abs(eval_loss - batch_mean) > 1e-3  # the batches hold 30, 14, 10 and 11 tokens: the Trainer's batch mean would differ


def test_classifier_eval_loss_is_the_example_mean(tmp_path):
    "Batches of 4, 4 and 2 examples: the mean over the 10 examples, not over the 3 batches."
    model, tok = load_model('tiny-bert', task='seq-cls', num_labels=2)
    data = sentiment_dataset(n_per_class=8)['train'].select(range(10)).map(lambda b: tok(b['text'], truncation=True, max_length=32), batched=True)
    data = data.remove_columns(['text'])
    coll = DataCollatorWithPadding(tok)
    t = make_trainer(model, tok, training_args(tmp_path, per_device_eval_batch_size=4, save_strategy='no'), data, data, collator=coll)
    model.eval()
    with torch.no_grad():
        losses = [torch.nn.functional.cross_entropy(model(**{k: v for k, v in coll([data[i]]).items() if k != 'labels'}).logits, torch.tensor([data[i]['label']])).item() for i in range(10)]
    assert t.evaluate()['eval_loss'] == pytest.approx(sum(losses) / 10, rel=1e-4)


def test_watchdog_stops_a_runaway_classifier_and_keeps_the_good_checkpoint(tmp_path):
    "lr 1e4 (the issue's example): stopped with one line; checkpoints from before it kept, none of the broken model written."
    model, tok = load_model('tiny-bert', task='seq-cls', num_labels=2)
    data = sentiment_dataset(n_per_class=32)['train'].map(lambda b: tok(b['text'], truncation=True, max_length=32), batched=True)
    args = training_args(tmp_path, max_steps=30, per_device_train_batch_size=8, learning_rate=1e4, logging_steps=1, save_steps=1,
                         save_total_limit=1, disable_tqdm=True)
    t = make_trainer(model, tok, args, data, collator=DataCollatorWithPadding(tok))
    with pytest.raises(TrainingDiverged) as e: train_with_estimate(t)
    msg, step = str(e.value), t.state.global_step
    assert '\n' not in msg and f'training diverged at step {step}:' in msg and 'now 10000' in msg and step < 30
    kept = [int(p.name.split('-')[1]) for p in tmp_path.glob('checkpoint-*')]
    assert all(k < step for k in kept)  # nothing saved once the loss was above the limit
    losses = [h['loss'] for h in t.state.log_history if 'loss' in h]
    dog = next(c for c in t.callback_handler.callbacks if isinstance(c, LossWatchdog))
    assert dog.diverged == msg and max(losses[-3:]) > 2 * losses[0]


def test_default_learning_rate_does_not_trip_the_watchdog(gpt2, tmp_path):
    model, tok, ds, coll = gpt2
    t = make_trainer(model, tok, training_args(tmp_path, max_steps=8, per_device_train_batch_size=8, logging_steps=1, disable_tqdm=True), ds, collator=coll)
    assert train_with_estimate(t)['interrupted'] is False
    assert next(c for c in t.callback_handler.callbacks if isinstance(c, LossWatchdog)).diverged is None


def test_budget_plans_what_train_runs(gpt2, tmp_path, capsys):
    "The estimate line's counts are what train() does; a schedule asked for with overhead=None is run as asked."
    model, tok, ds, coll = gpt2
    kw = dict(max_steps=6, per_device_train_batch_size=8, per_device_eval_batch_size=8, eval_strategy='steps', eval_steps=1,
              save_steps=1, disable_tqdm=True)
    kw['save_total_limit'] = None  # keep every checkpoint, to count them
    t = make_trainer(model, tok, training_args(tmp_path / 'a', **kw), ds, ds.select(range(16)), collator=coll)
    m = train_with_estimate(t)
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith('Estimated training time'))
    assert m['overhead_budget'] == 0.1 and '(budget 10%)' in line and 1 <= m['evaluations'] <= 6
    assert m['evaluations'] == sum('eval_loss' in h for h in t.state.log_history)  # the plan is what ran
    assert m['checkpoints'] == len(list((tmp_path / 'a').glob('checkpoint-*')))
    assert sum('loss' in h for h in t.state.log_history) == 6  # every step logged: points for the loss plot
    t = make_trainer(model, tok, training_args(tmp_path / 'b', **kw), ds, ds.select(range(16)), collator=coll)
    m = train_with_estimate(t, overhead=None)
    assert (m['evaluations'], m['checkpoints'], m['overhead_budget']) == (6, 6, None)
    assert sum('eval_loss' in h for h in t.state.log_history) == 6 and len(list((tmp_path / 'b').glob('checkpoint-*'))) == 6


def test_compile_when_it_pays_leaves_an_eager_model(monkeypatch, tmp_path, capsys):
    "With a prior that says compiling always pays, the run compiles the blocks, keeps them only if steps got faster, and ends eager."
    from transformers import GPT2Config, GPT2LMHeadModel
    from finetune_notebooks import train
    _, tok = load_model('tiny-gpt2')
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(tok), n_positions=64, pad_token_id=tok.pad_token_id))
    ds = joke_dataset().select(range(32)).map(lambda b: tok(b['text'], truncation=True, max_length=32), batched=True, remove_columns=['text'])
    monkeypatch.setitem(train.COMPILE_PRIOR, 'cpu', dict(gain=1.0, seconds=0.0, min_params=0, model_types=('gpt2',)))
    t = make_trainer(model, tok, training_args(tmp_path, max_steps=4, per_device_train_batch_size=8, save_strategy='no', disable_tqdm=True),
                     ds, collator=DataCollatorForLanguageModeling(tok, mlm=False))
    m = train_with_estimate(t)
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith('Estimated training time'))
    assert (m['compile_s'] is not None) == m['compiled'] == ('blocks compiled in' in line)
    assert m['compile_s'] is not None or m['estimate_measure_s'] > 0  # tried either way: the time is in the measuring
    assert all(b._compiled_call_impl is None for b in model.transformer.h)  # eager again, for generation
    m = train_with_estimate(make_trainer(model, tok, t.args, ds, collator=DataCollatorForLanguageModeling(tok, mlm=False)), compile=False)
    assert m['compiled'] is False and m['compile_s'] is None


def _plan_of_rank(rank, port, out):
    "One process of a 2-process gloo group: each times differently, so each brings its own plan."
    import torch.distributed as dist
    from finetune_notebooks.estimate import same_on_every_rank
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    try: out[rank] = same_on_every_rank((rank + 1, 10 * rank))
    finally: dist.destroy_process_group()


def test_every_rank_follows_rank_zeros_plan():
    "Under torchrun the evaluation/checkpoint plan and the compile decision are rank 0's in every process (else a gather waits forever)."
    import socket, torch.multiprocessing as mp
    from finetune_notebooks.estimate import same_on_every_rank
    assert same_on_every_rank((3, 4)) == (3, 4)  # one process: unchanged
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_plan_of_rank, args=(port, out), nprocs=2, join=True)
    assert dict(out) == {0: (1, 0), 1: (1, 0)}


def _act_names(model): return sorted({type(m).__name__ for m in model.modules() if 'GELU' in type(m).__name__})


def test_fuse_gelu_keeps_outputs_in_every_family():
    "GPT-2 and gated-GELU T5 (Flan-T5's kind) get the one-kernel GELU with the same outputs; BERT's exact GELU is left alone."
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration
    from finetune_notebooks.train import fuse_gelu
    torch.manual_seed(0)
    x = torch.randint(0, 100, (2, 12))
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32)).eval()
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=2,
                                             feed_forward_proj='gated-gelu', decoder_start_token_id=0)).eval()
    bert = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                    intermediate_size=64)).eval()
    run = {'gpt2': lambda m: m(x).logits, 't5': lambda m: m(input_ids=x, decoder_input_ids=x[:, :5]).logits,
           'bert': lambda m: m(x).logits}
    for name, model, swaps in (('gpt2', gpt2, 2), ('t5', t5, 4), ('bert', bert, 0)):
        with torch.no_grad(): before = run[name](model)
        assert fuse_gelu(model) == swaps, name
        with torch.no_grad(): assert torch.allclose(run[name](model), before, atol=1e-5), name
    assert _act_names(gpt2) == _act_names(t5) == ['GELUTanh'] and _act_names(bert) == ['GELUActivation']
    assert (gpt2.config.activation_function, t5.config.dense_act_fn) == ('gelu_new', 'gelu_new')  # saved configs unchanged


def test_train_applies_speedups_unless_told_not_to(tmp_path):
    "train() steps with the fused GELU (not with speedups=False) and hands back the model with the modules it had."
    model, tok = load_model('tiny-gpt2')
    ds = joke_dataset().select(range(16)).map(lambda b: tok(b['text'], truncation=True, max_length=32), batched=True, remove_columns=['text'])
    make = lambda m: make_trainer(m, tok, training_args(tmp_path, max_steps=2, per_device_train_batch_size=8, save_strategy='no', disable_tqdm=True),
                                  ds, collator=DataCollatorForLanguageModeling(tok, mlm=False))
    class Seen(TrainerCallback):  # the activations train() steps with
        def on_step_begin(self, args, state, control, model=None, **kw): self.names = _act_names(model)
    for speedups, during in ((False, ['NewGELUActivation']), (True, ['GELUTanh'])):
        t = make(model); seen = Seen(); t.add_callback(seen)
        train_with_estimate(t, speedups=speedups)
        assert seen.names == during, speedups
        assert _act_names(model) == ['NewGELUActivation']  # after training: the modules it was loaded with


_FAULTS = """
import ctypes, json, resource
from finetune_notebooks.train import keep_freed_memory
libc = ctypes.CDLL('libc.so.6'); libc.malloc.restype = ctypes.c_void_p; libc.free.argtypes = (ctypes.c_void_p,)
libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
def rounds(n=4, size=128 << 20):
    out = []
    for _ in range(n):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        p = libc.malloc(size); libc.memset(p, 1, size); libc.free(p)
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return out
first = rounds(); kept = keep_freed_memory(); after = rounds()
released = keep_freed_memory(False)
print(json.dumps([first, kept, after, released, rounds()]))
"""


@pytest.mark.skipif(__import__('platform').libc_ver()[0] != 'glibc', reason='keep_freed_memory only changes glibc')
def test_keep_freed_memory_reuses_pages():
    "In a fresh process: every freed 128 MB block goes back to the kernel and faults its 32,768 pages in again; after keep_freed_memory only the first does; released, every one again."
    import subprocess, sys
    out = subprocess.run([sys.executable, '-c', _FAULTS], capture_output=True, text=True, check=True, timeout=300)
    first, kept, after, released, again = json.loads(out.stdout.strip().splitlines()[-1])
    assert kept is True and released is True
    assert min(first) > 30_000, first  # 128 MB = 32,768 pages of 4 KB, each round
    assert max(after[1:]) < 1_000, after  # reused: no new pages
    assert min(again[1:]) > 30_000, again  # released: a block over 32 MB has its own mapping again


def test_memory_is_kept_for_steps_and_released_for_saves(tmp_path, monkeypatch):
    "With the speed-ups, freed memory is kept while the Trainer steps, released for each checkpoint (growing buffers are copied on the heap) and after training."
    import finetune_notebooks.train as train_mod
    state, calls = [None], []
    def fake(keep=True): state[0] = keep; calls.append(keep); return True
    monkeypatch.setattr(train_mod, 'keep_freed_memory', fake)
    model, tok = load_model('tiny-gpt2')
    ds = joke_dataset().select(range(16)).map(lambda b: tok(b['text'], truncation=True, max_length=32), batched=True, remove_columns=['text'])
    class Seen(TrainerCallback):  # runs before KeptMemory, which train_with_estimate adds last
        def __init__(self): self.steps, self.saves = [], []
        def on_step_end(self, *a, **kw): self.steps.append(state[0])
        def on_save(self, *a, **kw): self.saves.append(state[0])
    for speedups in (False, True):
        args = training_args(tmp_path / str(speedups), max_steps=2, per_device_train_batch_size=8, save_steps=1, disable_tqdm=True)
        t = make_trainer(model, tok, args, ds, collator=DataCollatorForLanguageModeling(tok, mlm=False))
        seen = Seen(); t.add_callback(seen)
        train_with_estimate(t, speedups=speedups, overhead=None)
        if not speedups: assert calls == [] and seen.saves == [None, None]; continue
        assert seen.steps == [True, True] and seen.saves == [False, False], (seen.steps, seen.saves)
        assert state[0] is False and not any(isinstance(c, train_mod.KeptMemory) for c in t.callback_handler.callbacks)
