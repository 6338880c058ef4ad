"End-to-end checks of finetune_notebooks.classify: a smoke run through `run`, as `ftnb classify --smoke` does it."
import json
import pytest, torch
from finetune_notebooks import models
from finetune_notebooks.classify import ClassifyConfig, run, predict, load_classifier, padding_fractions, tokenize_texts, load_classify_data

KEYS = ('method', 'model', 'device', 'precision', 'train_loss', 'accuracy_before', 'f1_before', 'accuracy_after',
        'f1_after', 'eval_loss', 'train_runtime_s', 'estimated_runtime_s', 'train_tokens', 'tokens_per_s',
        'padding_fraction', 'examples_per_s')


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('classify') / 'out'
    return out, run(ClassifyConfig.smoke(), out)


def test_metrics_json(smoke_run):
    out, metrics = smoke_run
    written = json.loads((out / 'metrics.json').read_text())
    for k in KEYS: assert k in written, f'metrics.json lacks {k}'
    assert written['method'] == 'classify'
    assert 0 <= written['accuracy_after'] <= 1 and 0 <= written['padding_fraction'] < 1
    assert written['train_loss'] > 0 and written['tokens_per_s'] > 0


def test_loss_png(smoke_run):
    out, _ = smoke_run
    assert (out / 'loss.png').stat().st_size > 1000


def test_saved_model_reloads_with_same_predictions(smoke_run):
    out, _ = smoke_run
    cfg = ClassifyConfig.smoke()
    model, tok = models.load_model(str(out / 'model'), task='seq-cls')
    assert model.config.id2label == {0: 'negative', 1: 'positive'}
    texts = ['what a lovely day', 'this is awful']
    again, tok2 = models.load_model(str(out / 'model'), task='seq-cls')
    torch.testing.assert_close(model(**tok(texts, padding=True, return_tensors='pt')).logits,
                               again(**tok2(texts, padding=True, return_tensors='pt')).logits)
    assert [p['label'] for p in predict(model, tok, texts)] == [p['label'] for p in predict(again, tok2, texts)]


def test_grouping_reduces_padding():
    cfg = ClassifyConfig.smoke()
    _, tok = load_classifier(cfg)
    tokenized = tokenize_texts(load_classify_data(cfg), tok, max_length=64)
    pad = padding_fractions(tokenized['train'], tok, batch_size=8, max_length=64)
    assert pad['max_length'] > pad['dynamic'] >= pad['grouped']


def test_overwrite_protection(smoke_run):
    out, _ = smoke_run
    with pytest.raises(FileExistsError, match="--overwrite"): run(ClassifyConfig.smoke(), out)
