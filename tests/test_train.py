"End-to-end checks of finetune_notebooks.train on the offline tiny models (seconds on a CPU)."
import json, math, os, signal
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import DataCollatorForLanguageModeling, DataCollatorWithPadding, TrainerCallback

from finetune_notebooks.core import Precision
from finetune_notebooks.data import joke_dataset, sentiment_dataset
from finetune_notebooks.models import load_model
from finetune_notebooks.train import (GracefulStop, LocalMetric, OutputExists, TrainerEstimate, estimate_trainer_time, last_checkpoint,
                                      load_metric, make_trainer, padding_fraction, save_atomic, total_train_steps,
                                      train_with_estimate, training_args, training_kwargs, useful_tokens, write_run)


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


def test_train_save_reload_and_record(gpt2, tmp_path, capsys):
    model, tok, ds, coll = gpt2
    args = training_args(tmp_path / 'checkpoints', max_steps=6, per_device_train_batch_size=8, learning_rate=1e-3)
    t = make_trainer(model, tok, args, ds, collator=coll)
    loader = t.get_train_dataloader()
    pad, useful = padding_fraction(loader), sum(useful_tokens(b) for b in loader)
    assert 0 < pad < 1 and useful == sum(len(x) for x in ds['input_ids'])
    m = train_with_estimate(t)
    assert 'Training completed in' in capsys.readouterr().out
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


def test_resume_with_seq_cls(tmp_path):
    model, tok = load_model('tiny-bert', task='seq-cls', num_labels=2)
    data = sentiment_dataset(n_per_class=16)['train'].map(lambda b: tok(b['text'], truncation=True, max_length=32), batched=True)
    args = training_args(tmp_path, max_steps=5, per_device_train_batch_size=4, save_strategy='no', disable_tqdm=True)
    t = make_trainer(model, tok, args, data, collator=DataCollatorWithPadding(tok), callbacks=[Kill(signal.SIGTERM, {2})])
    assert train_with_estimate(t)['interrupted'] and t.state.global_step == 2
    assert Path(last_checkpoint(tmp_path)).name == 'checkpoint-2'
    model2, _ = load_model('tiny-bert', task='seq-cls', num_labels=2)
    t2 = make_trainer(model2, tok, args, data, collator=DataCollatorWithPadding(tok))
    assert train_with_estimate(t2, resume=True)['interrupted'] is False and t2.state.global_step == 5


def test_local_metrics_match_sklearn():
    sk = pytest.importorskip('sklearn.metrics')
    p, r = [0, 1, 2, 2, 1, 0, 1], [0, 2, 2, 1, 1, 0, 0]
    assert LocalMetric('accuracy').compute(predictions=p, references=r)['accuracy'] == pytest.approx(sk.accuracy_score(r, p))
    f1 = LocalMetric('f1').compute(predictions=p, references=r, average='macro')['f1']
    assert f1 == pytest.approx(sk.f1_score(r, p, average='macro'))
    pb, rb = [1, 0, 1, 1, 0], [1, 1, 0, 1, 0]
    assert LocalMetric('f1').compute(predictions=pb, references=rb)['f1'] == pytest.approx(sk.f1_score(rb, pb))


def test_rouge_corpus_average():
    m = LocalMetric('rouge')
    # identical pair scores 1 everywhere; disjoint pair scores 0 -> mean 0.5
    s = m.compute(predictions=['the cat sat', 'dog'], references=['The cat sat', 'bird'])
    assert s == pytest.approx({'rouge1': 0.5, 'rouge2': 0.5, 'rougeL': 0.5})


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


def test_local_metrics_take_numpy_arrays():
    p, r = np.array([1, 0, 1, 1]), np.array([1, 1, 1, 0])  # what a compute_metrics gets from the Trainer
    assert LocalMetric('accuracy').compute(predictions=p, references=r) == {'accuracy': 0.5}
    assert LocalMetric('f1').compute(predictions=p, references=r)['f1'] == pytest.approx(2 / 3)
    assert LocalMetric('exact_match').compute(predictions=np.array(['a ', 'b']), references=np.array(['a', 'c'])) == {'exact_match': 0.5}
    with pytest.raises(ValueError, match='non-empty'): LocalMetric('accuracy').compute(predictions=np.array([]), references=np.array([]))
