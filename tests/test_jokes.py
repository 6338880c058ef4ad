"End-to-end smoke run of the jokes method: metrics, loss plot, reloadable model."
import json, math
from dataclasses import replace
import pytest, torch
from finetune_notebooks.jokes import JokesConfig, run, load_jokes, tokenize_jokes, pack_jokes, sample_jokes, make_joke_trainer, prepare_blocks
from finetune_notebooks.train import trained_model
from finetune_notebooks.runs import save_atomic
from finetune_notebooks.models import load_model

METHOD = 'jokes'  # the session's smoke run (tests/conftest.py); tests/test_runs.py checks what every method writes

def test_perplexity_and_packing(smoke_run):
    out, m = smoke_run
    saved = json.loads((out / 'metrics.json').read_text())
    assert saved['perplexity_before'] > 1 and saved['perplexity_after'] > 1
    assert saved['eval_loss'] == pytest.approx(math.log(saved['perplexity_after']))  # one meaning: token-weighted, in nats
    assert 0 <= saved['padding_fraction'] < 0.25

def test_saved_model_reloads_and_generates_the_same(smoke_run):
    out, m = smoke_run
    model, tok = load_model(str(out / 'model'))
    assert sample_jokes(model, tok, JokesConfig.smoke(), 'greedy') == m['samples']

def test_reload_matches_the_unwrapped_trained_model(tmp_path):
    "Like with like: without the Trainer's autocast, the trained model and its reloaded copy give the same logits and greedy jokes."
    cfg = replace(JokesConfig.smoke(), max_new_tokens=16)
    model, tok = load_model(cfg.model)
    blocks = prepare_blocks(cfg, tok)
    trainer = make_joke_trainer(model, tok, blocks, cfg, tmp_path / 'ck')
    trainer.train()
    x = tok(['A programmer walks into a bar', 'Why did the'], padding=True, return_tensors='pt')
    with torch.no_grad(): in_trainer = model.eval()(**x).logits # still under the Trainer's autocast when bf16/fp16
    save_atomic(model, tok, tmp_path / 'model')
    again, tok2 = load_model(str(tmp_path / 'model'))
    with torch.no_grad(): want = again.eval()(**x).logits
    if trainer.args.bf16 or trainer.args.fp16: # without unwrapping, this comparison fails
        assert not torch.allclose(in_trainer, want, rtol=1.3e-6, atol=1e-5)
    plain = trained_model(trainer).eval()
    with torch.no_grad(): torch.testing.assert_close(plain(**x).logits, want)
    assert sample_jokes(plain, tok, cfg, 'greedy') == sample_jokes(again, tok2, cfg, 'greedy')

def test_article_csv_columns_and_the_mirror(tmp_path, monkeypatch):
    "onelinefun.csv's own columns (ID, Joke) work as they are; FTNB_JOKES_URL points the full recipe at a mirror."
    import csv as _csv, pyjokes
    csv = tmp_path / 'onelinefun.csv'
    with open(csv, 'w', newline='') as fh: _csv.writer(fh).writerows([('ID', 'Joke'), *enumerate(pyjokes.get_jokes()[:20])])
    jokes = load_jokes(replace(JokesConfig.smoke(), data=str(csv)))
    assert jokes['train'].column_names == ['text'] and len(jokes['train']) + len(jokes['test']) == 20
    monkeypatch.setenv('FTNB_JOKES_URL', 'http://127.0.0.1:9/mirror/onelinefun.csv')
    assert JokesConfig().data == 'http://127.0.0.1:9/mirror/onelinefun.csv'
    monkeypatch.delenv('FTNB_JOKES_URL')
    assert JokesConfig().data.endswith('/data/onelinefun.csv')

def test_every_joke_ends_with_eos_and_packs_whole():
    cfg = JokesConfig.smoke()
    _, tok = load_model(cfg.model)
    tokens = tokenize_jokes(load_jokes(cfg)['train'], tok)
    ids = list(tokens['input_ids'])
    assert all(x[-1] == tok.eos_token_id for x in ids)
    blocks = pack_jokes(tokens, 128)
    n_tokens = sum(len(b) for b in blocks['input_ids'])
    assert n_tokens == sum(map(len, ids))
    assert n_tokens / (128 * len(blocks)) > 0.9  # under 10% padding inside blocks
