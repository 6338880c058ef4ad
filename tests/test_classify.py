"End-to-end checks of finetune_notebooks.classify: a smoke run through `run`, as `ftnb classify --smoke` does it."
import json
import numpy as np
import pytest, torch
from dataclasses import replace
from finetune_notebooks import models, train
from finetune_notebooks.train import trained_model
from finetune_notebooks.runs import save_atomic
from finetune_notebooks.classify import (ClassifyConfig, EXAMPLE_TEXTS, predict, load_classifier, padding_fractions, tokenize_texts,
                                         load_classify_data, classify_trainer, strategy_batches, padding_grid, plot_padding)

METHOD = 'classify'  # the session's smoke run (tests/conftest.py); tests/test_runs.py checks what every method writes


def test_accuracy_f1_and_speed(smoke_run):
    out, metrics = smoke_run
    written = json.loads((out / 'metrics.json').read_text())
    for k in ('accuracy_before', 'f1_before', 'accuracy_after', 'f1_after', 'examples_per_s'): assert k in written, k
    assert 0 <= written['accuracy_after'] <= 1 and 0 <= written['f1_after'] <= 1


def test_own_columns(tmp_path):
    "A table with other column names: the text column is found, the label column is named."
    csv = tmp_path / 'reviews.csv'
    csv.write_text('id,review,stars\n' + ''.join(f'{i},{"great film" if i % 2 else "awful film"} number {i},{i % 2}\n' for i in range(40)))
    dd = load_classify_data(replace(ClassifyConfig.smoke(), data=str(csv), label_column='stars', n_train=10, n_test=4))
    assert dd['train'].column_names == ['text', 'label'] and len(dd['train']) == 10 and set(dd['train']['label']) <= {0, 1}


def test_saved_model_reloads_with_same_predictions(smoke_run):
    "The reloaded model gives exactly the labels and scores `run` recorded from the trained model in memory."
    out, metrics = smoke_run
    model, tok = models.load_model(str(out / 'model'), task='seq-cls')
    assert model.config.id2label == {0: 'negative', 1: 'positive'}
    assert len(metrics['predictions']) == len(EXAMPLE_TEXTS)
    assert predict(model, tok, EXAMPLE_TEXTS, ClassifyConfig.smoke().max_length) == metrics['predictions']


def test_reload_matches_the_unwrapped_trained_model(tmp_path):
    "Compare like with like: the Trainer's mixed-precision forward is removed before comparing with an fp32 reload."
    cfg = ClassifyConfig.smoke()
    model, tok = load_classifier(cfg)
    trainer = classify_trainer(model, tok, tokenize_texts(load_classify_data(cfg), tok, cfg.max_length), cfg, tmp_path / 'ck')
    trainer.train()
    x = tok(list(EXAMPLE_TEXTS), padding=True, return_tensors='pt').to(model.device) # the Trainer put the model on its device
    with torch.no_grad(): in_trainer = model.eval()(**x).logits # still under the Trainer's autocast when bf16/fp16
    save_atomic(model, tok, tmp_path / 'model')
    reloaded, _ = models.load_model(str(tmp_path / 'model'), task='seq-cls')
    reloaded = reloaded.to(model.device) # compare on one device
    with torch.no_grad(): want = reloaded.eval()(**x).logits
    if trainer.args.bf16 or trainer.args.fp16: # this comparison is the one that fails without unwrapping
        assert not torch.allclose(in_trainer, want, rtol=1.3e-6, atol=1e-5)
    with torch.no_grad(): got = trained_model(trainer)(**x).logits
    torch.testing.assert_close(got, want) # fp32 tolerances
    assert got.argmax(-1).tolist() == want.argmax(-1).tolist()


def test_grouping_reduces_padding():
    cfg = ClassifyConfig.smoke()
    _, tok = load_classifier(cfg)
    tokenized = tokenize_texts(load_classify_data(cfg), tok, max_length=64)
    pad = padding_fractions(tokenized['train'], tok, batch_size=8, max_length=64)
    assert pad['max_length'] > pad['dynamic'] >= pad['grouped']



def test_padding_pictures_show_the_counted_batches():
    "The grids are the strategies' real batches: max_length rows are all max_length wide, dynamic ones only as wide as their longest text."
    cfg = ClassifyConfig.smoke()
    _, tok = load_classifier(cfg)
    tokenized = tokenize_texts(load_classify_data(cfg), tok, max_length=64)['train']
    batches = strategy_batches(tokenized, tok, batch_size=8, max_length=64)
    fixed, dynamic = next(batches['max_length']), next(batches['dynamic'])
    assert fixed['input_ids'].shape == (8, 64) and dynamic['input_ids'].shape[1] == int(dynamic['attention_mask'].sum(1).max())
    grid = padding_grid([fixed, dynamic], width=64)
    assert grid.shape == (16, 64) and not np.isnan(grid[:8]).any() and np.isnan(grid[8:, dynamic['input_ids'].shape[1]:]).all()
    fig = plot_padding(tokenized, tok, batch_size=8, max_length=64)
    pad = padding_fractions(tokenized, tok, batch_size=8, max_length=64)
    assert [a.get_title() for a in fig.axes] == [f'{k}: {v:.0%} padding' for k, v in pad.items()]


def test_trainer_takes_extra_arguments_and_prints_no_name_translations(tmp_path, capsys):
    "classify_trainer uses transformers 5 names (no 'warmup_ratio → ...' lines) and passes extra TrainingArguments on."
    cfg = ClassifyConfig.smoke()
    model, tok = load_classifier(cfg)
    trainer = classify_trainer(model, tok, tokenize_texts(load_classify_data(cfg), tok, cfg.max_length), cfg, tmp_path, save_strategy='no')
    assert trainer.args.save_strategy == 'no' and trainer.args.train_sampling_strategy == 'group_by_length'
    assert '→' not in capsys.readouterr().out


def test_load_classifier_keeps_the_expected_load_report_quiet(capfd):
    "The new head's 'MISSING, newly initialized' report is expected and not shown; transformers' verbosity is restored."
    from transformers.utils import logging as hf_logging
    before = hf_logging.get_verbosity()
    load_classifier(ClassifyConfig.offline()) # minilm: a pretrained encoder with a new head
    out = capfd.readouterr()
    assert 'MISSING' not in out.out + out.err and hf_logging.get_verbosity() == before
