"End-to-end smoke run of the chat method, plus the template, label-mask, truncation, data-loading and chat() checks."
import json
import pytest, torch
from datasets import Dataset
from finetune_notebooks.chat import (Config, add_chat_template, encode_chat, fit_chat, fit_chats, split_fits, prepare_chats, chat, chat_replies,
                                     hub_chats, load_chats, show_label_mask, CHAT_TEMPLATE)
import finetune_notebooks.chat as chat_module
from finetune_notebooks.models import load_model

METHOD = 'chat'  # the session's smoke run (tests/conftest.py); tests/test_runs.py checks what every method writes
KEYS = {'eval_loss_before', 'eval_loss_after', 'perplexity_before', 'perplexity_after', 'data_trimmed', 'data_truncated',
        'data_dropped', 'replies_before', 'replies_after'}
CONVO = [{'role': 'user', 'content': 'What is 2 + 3?'}, {'role': 'assistant', 'content': '2 + 3 = 5.'},
         {'role': 'user', 'content': 'And 2 + 4?'}, {'role': 'assistant', 'content': '2 + 4 = 6.'}]

@pytest.fixture(scope='module')
def tok():
    return add_chat_template(load_model('tiny-gpt2')[1])

def test_chat_metrics(smoke_run):
    out, m = smoke_run
    saved = json.loads((out / 'metrics.json').read_text())
    assert KEYS <= set(saved)
    assert saved['perplexity_before'] > 1 and saved['perplexity_after'] > 1
    assert saved['eval_loss'] == saved['eval_loss_after']  # the held-out loss on assistant tokens after training

def test_saved_model_reloads_and_replies_the_same(smoke_run):
    out, m = smoke_run
    model, tok = load_model(str(out / 'model'))
    assert tok.chat_template == CHAT_TEMPLATE
    assert chat_replies(model, tok, Config.smoke()) == m['replies_after']

def test_template_exact_string(tok):
    eos = tok.eos_token
    assert tok.apply_chat_template(CONVO, tokenize=False) == f"user: What is 2 + 3?\nassistant: 2 + 3 = 5.{eos}\nuser: And 2 + 4?\nassistant: 2 + 4 = 6.{eos}"
    assert tok.apply_chat_template(CONVO[:1], tokenize=False, add_generation_prompt=True) == "user: What is 2 + 3?\nassistant:"

def test_label_mask_trains_assistant_and_eos_only(tok):
    enc = encode_chat(CONVO, tok)
    ids, labels = enc['input_ids'], enc['labels']
    assert all(l in (-100, i) for i, l in zip(ids, labels))
    assert tok.decode([i for i, l in zip(ids, labels) if l != -100]) == f" 2 + 3 = 5.{tok.eos_token} 2 + 4 = 6.{tok.eos_token}"
    assert tok.decode([i for i, l in zip(ids, labels) if l == -100]) == "user: What is 2 + 3?\nassistant:\nuser: And 2 + 4?\nassistant:"
    eos_pos = [k for k, i in enumerate(ids) if i == tok.eos_token_id]
    assert len(eos_pos) == 2 and all(labels[k] == tok.eos_token_id for k in eos_pos)

def test_truncation_trim_drop_counts(tok):
    long_q = {'role': 'user', 'content': 'Tell me about ' + 'numbers ' * 40}
    rows = [CONVO[:2], CONVO, [long_q, CONVO[1]], [long_q, CONVO[1]] + CONVO[2:]]
    ds, report = prepare_chats(Dataset.from_dict({'messages': rows}), tok, max_length=24)
    assert report == {'conversations': 4, 'trimmed': 1, 'truncated': 1, 'dropped': 1}
    assert len(ds) == 3 and max(map(len, ds['input_ids'])) <= 24
    assert all(any(l != -100 for l in labels) for labels in ds['labels'])  # every kept example trains something
    assert fit_chat([long_q, CONVO[1]], tok, 24) is None

def test_fit_chats_encodes_once_and_keeps_lengths(tok, monkeypatch):
    "Each kept conversation is encoded once per start tried; `length` is the whole conversation's, dropped ones included."
    long_q = {'role': 'user', 'content': 'Tell me about ' + 'numbers ' * 40}
    rows = [CONVO[:2], CONVO, [long_q, CONVO[1]]]
    calls = []
    real = chat_module.encode_chat
    monkeypatch.setattr(chat_module, 'encode_chat', lambda m, t: calls.append(len(m)) or real(m, t))
    fitted = fit_chats(Dataset.from_dict({'messages': rows}), tok, max_length=24)
    assert fitted['length'] == [len(real(r, tok)['input_ids']) for r in rows]
    assert fitted['dropped'] == [False, False, True]
    assert calls == [2, 4, 2, 2]  # the two that fit: one encoding each; the dropped one: its only start, then its length
    kept, report = split_fits(fitted)
    assert kept.column_names == ['input_ids', 'labels'] and len(kept) == 2 and report['dropped'] == 1

def test_hub_chats_downloads_only_the_two_splits(monkeypatch):
    "ultrachat keeps each split in data/<split>-*: ask for those files; another layout falls back to split=."
    import datasets
    calls = []
    def fake(name, data_files=None, split=None):
        calls.append((name, data_files, split))
        if data_files is not None and name != 'HuggingFaceH4/ultrachat_200k': raise datasets.exceptions.DataFilesNotFoundError('no files')
        return {'train': 'T', 'test': 'E'} if data_files else split
    monkeypatch.setattr(datasets, 'load_dataset', fake)
    assert hub_chats('HuggingFaceH4/ultrachat_200k', 'train_gen', 'test_gen') == {'train': 'T', 'test': 'E'}
    assert calls == [('HuggingFaceH4/ultrachat_200k', {'train': 'data/train_gen-*', 'test': 'data/test_gen-*'}, None)]
    calls.clear()
    dd = hub_chats('someone/chats', 'train', 'test')
    assert dict(dd) == {'train': 'train', 'test': 'test'} and [c[2] for c in calls] == [None, 'train', 'test']

def test_load_chats_offline_and_from_a_file(tmp_path):
    dd = load_chats(Config.smoke())
    assert set(dd) == {'train', 'test'} and len(dd['train']) + len(dd['test']) == Config.smoke().n_offline
    path = tmp_path / 'mine.jsonl'
    Dataset.from_dict({'messages': [CONVO] * 10}).to_json(path)
    dd = load_chats(Config.smoke().updated(data=str(path)))
    assert (len(dd['train']), len(dd['test'])) == (9, 1) and dd['train'][0]['messages'] == CONVO

def test_label_mask_picture_colours_labelled_tokens(tok):
    enc = encode_chat(CONVO, tok)
    ax = show_label_mask(enc['input_ids'], enc['labels'], tok).axes[0]
    green = [p for p in ax.patches if p.get_facecolor()[0] < 0.7]
    assert len(ax.patches) == len(enc['input_ids']) and len(green) == sum(l != -100 for l in enc['labels'])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f'trained: label = the token ({len(green)})',
                                                                  f'ignored: label -100 ({len(enc["labels"]) - len(green)})']

class _EchoModel(torch.nn.Module):
    "Stands in for a causal LM: echoes the prompt, then a fixed continuation."
    def __init__(self, new_ids): super().__init__(); self.new_ids = new_ids
    @property
    def device(self): return torch.device('cpu')
    def generate(self, input_ids, **kw): return torch.cat([input_ids, torch.tensor([self.new_ids] * len(input_ids))], dim=1)

def test_chat_returns_only_the_reply(tok):
    new = tok(' 2 + 3 = 5.')['input_ids'] + [tok.eos_token_id] + tok('\nuser: junk')['input_ids']
    assert chat(_EchoModel(new), tok, 'What is 2 + 3?') == '2 + 3 = 5.'
    assert chat(_EchoModel(tok(' 5\nuser: more')['input_ids']), tok, CONVO[:1]) == '5'
    model, _ = load_model('tiny-gpt2')
    reply = chat(model, tok, 'What is 2 + 3?', max_new_tokens=8)
    assert 'What is' not in reply and 'user:' not in reply
    with pytest.raises(ValueError, match="preset='hot'"): chat(model, tok, 'hi', preset='hot')
