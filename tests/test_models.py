"End-to-end checks of finetune_notebooks.models: determinism, save/load, EOS labels, errors, minilm."
import json, os, subprocess, sys

import pytest
import torch
from transformers import DataCollatorForLanguageModeling

from finetune_notebooks import models
from finetune_notebooks.models import (ModelUnavailable, OFFLINE_MODELS, count_parameters, load_model, model_family,
                                       parameter_share)

TINY = [('tiny-gpt2', 'causal-lm', 'GPT2LMHeadModel'), ('tiny-bert', 'seq-cls', 'BertForSequenceClassification'),
        ('tiny-t5', 'seq2seq', 'T5ForConditionalGeneration')]
TEXT = 'Why do programmers prefer dark mode? Because light attracts bugs.'


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize('name,task,cls', TINY)
def test_tiny_models_use_the_real_classes_and_are_deterministic(name, task, cls):
    (m1, t1), (m2, t2) = load_model(name, task), load_model(name, task)
    assert type(m1).__name__ == cls
    assert same_weights(m1, m2)
    assert t1(TEXT)['input_ids'] == t2(TEXT)['input_ids']
    assert m1.get_input_embeddings().num_embeddings == len(t1)


def test_tokenizer_training_is_deterministic_across_processes(tmp_path):
    "Train each tiny tokenizer in two fresh processes with empty caches: identical JSON."
    code = ("from finetune_notebooks import models; import hashlib; "
            "print([hashlib.sha256(models._tokenizer_json(f).encode()).hexdigest() for f in ('gpt2', 'bert', 't5')])")
    outs = [subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                           env={**os.environ, 'XDG_CACHE_HOME': str(tmp_path / f'c{i}')}).stdout for i in range(2)]
    assert outs[0] == outs[1] and outs[0].count("'") == 6


def test_building_does_not_touch_the_global_rng():
    torch.manual_seed(123); expected = torch.rand(3)
    torch.manual_seed(123); load_model('tiny-gpt2'); got = torch.rand(3)
    assert torch.equal(expected, got)


@pytest.mark.parametrize('name,task,cls', TINY)
def test_save_load_round_trip(tmp_path, name, task, cls):
    model, tok = load_model(name, task)
    model.save_pretrained(tmp_path); tok.save_pretrained(tmp_path)
    assert (tmp_path / 'model.safetensors').exists()
    model2, tok2 = load_model(str(tmp_path), task)
    assert type(model2).__name__ == cls
    assert same_weights(model, model2)
    assert tok2(TEXT)['input_ids'] == tok(TEXT)['input_ids']  # special tokens ([CLS]/[SEP], </s>) survive
    for attr in ('pad_token_id', 'eos_token_id', 'bos_token_id', 'cls_token_id', 'sep_token_id'):
        assert getattr(tok2, attr) == getattr(tok, attr), attr
    assert model2.config.pad_token_id == tok2.pad_token_id


def test_saved_classifier_keeps_its_classes(tmp_path):
    model, tok = load_model('tiny-bert', 'seq-cls', id2label={0: 'sad', 1: 'calm', 2: 'happy'})
    model.save_pretrained(tmp_path); tok.save_pretrained(tmp_path)
    again, _ = load_model(str(tmp_path), 'seq-cls')
    assert again.config.id2label == {0: 'sad', 1: 'calm', 2: 'happy'} and again.classifier.out_features == 3
    assert same_weights(model, again)


def test_special_tokens_per_family():
    _, g = load_model('tiny-gpt2')
    assert g.eos_token == g.bos_token == '<|endoftext|>' and g.pad_token == '<|pad|>'
    _, b = load_model('tiny-bert', 'seq-cls')
    ids = b(TEXT)['input_ids']
    assert (ids[0], ids[-1]) == (b.cls_token_id, b.sep_token_id)
    assert b.pad_token_id == 0 and b.mask_token == '[MASK]'
    m, t = load_model('tiny-t5', 'seq2seq')
    assert (t.pad_token_id, t.eos_token_id, t.unk_token_id) == (0, 1, 2)
    assert t(TEXT)['input_ids'][-1] == 1
    assert m.config.decoder_start_token_id == 0


def collate_eos(tok, texts):
    batch = DataCollatorForLanguageModeling(tok, mlm=False)([tok(t + tok.eos_token) for t in texts])
    return batch, batch['input_ids'] == tok.eos_token_id, batch['attention_mask'] == 0


def test_eos_stays_in_the_loss():
    _, tok = load_model('tiny-gpt2')
    batch, eos, pad = collate_eos(tok, ['Short.', 'A much longer joke about a duck and a programmer.'])
    assert eos.sum() == 2 and pad.sum() > 0
    assert (batch['labels'][eos] != -100).all()
    assert ((batch['labels'] == -100) == pad).all()  # only pad positions are ignored


def test_naive_pad_equals_eos_drops_eos_and_add_pad_token_fixes_it():
    model, tok = load_model('tiny-gpt2')
    tok.pad_token = tok.eos_token  # the naive recipe
    batch, eos, _ = collate_eos(tok, ['Short.', 'A much longer joke.'])
    assert (batch['labels'][eos] == -100).all()
    model, tok = models.add_pad_token(model, tok)
    assert tok.pad_token_id != tok.eos_token_id
    assert model.config.pad_token_id == model.generation_config.pad_token_id == tok.pad_token_id
    assert model.get_input_embeddings().num_embeddings >= len(tok)
    batch, eos, _ = collate_eos(tok, ['Short.', 'A much longer joke.'])
    assert (batch['labels'][eos] != -100).all()


def test_hub_model_unavailable_offline(monkeypatch, tmp_path):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(ModelUnavailable) as e:
        load_model('gpt2', cache_dir=str(tmp_path))  # an empty cache: nothing to fall back on
    msg = str(e.value)
    assert "'gpt2'" in msg and 'FTNB_SMOKE=1' in msg and '\n' not in msg
    assert all(name in msg for name in OFFLINE_MODELS)
    assert isinstance(e.value, RuntimeError)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='has no config.json'): load_model(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='does not exist'): load_model(str(tmp_path / 'missing'))


def test_unknown_task_lists_the_tasks():
    with pytest.raises(ValueError, match='causal-lm, seq-cls, seq2seq'): load_model('tiny-gpt2', task='generate')


def test_minilm_is_pretrained_and_classifies():
    model, tok = load_model('minilm', 'seq-cls', id2label={0: 'negative', 1: 'positive'})
    assert type(model).__name__ == 'BertForSequenceClassification'
    assert abs(count_parameters(model) / 1e6 - 22.7) < 0.2
    batch = tok(['I loved it.', 'Dull and far too long.'], padding=True, return_tensors='pt')
    with torch.no_grad(): logits = model(**batch).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    assert model.config.label2id == {'negative': 0, 'positive': 1}
    # pretrained, not random: the word embeddings are not the initializer's N(0, 0.02)
    assert model.bert.embeddings.word_embeddings.weight.std() > 0.03


def test_minilm_rejects_generation_tasks():
    with pytest.raises(ValueError, match="task='seq-cls'"): load_model('minilm')


def test_helpers():
    model, _ = load_model('tiny-bert', 'seq-cls', num_labels=3)
    assert model.config.num_labels == 3
    assert parameter_share(model) == 1.0
    for p in model.bert.parameters(): p.requires_grad_(False)
    head = count_parameters(model.classifier)
    assert count_parameters(model, trainable_only=True) == head
    assert 0 < parameter_share(model) < 0.1
    assert model_family(model) == 'bert' and model_family('tiny-gpt2') == 'gpt2'
    assert 'BertForSequenceClassification' in models.describe_model(model)


def test_dtype():
    model, _ = load_model('tiny-t5', 'seq2seq', dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
