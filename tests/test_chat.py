"End-to-end smoke run of the chat method, plus the template, label-mask, truncation and chat() checks."
import json
import pytest, torch
from datasets import Dataset
from finetune_notebooks.chat import (Config, add_chat_template, encode_chat, fit_chat, prepare_chats, chat, chat_replies, CHAT_TEMPLATE)
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
