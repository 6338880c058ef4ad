"End-to-end smoke run of the jokes method: metrics, loss plot, reloadable model."
import json
from dataclasses import replace
import pytest, torch
from finetune_notebooks.jokes import JokesConfig, run, load_jokes, tokenize_jokes, pack_jokes, sample_jokes, make_joke_trainer, prepare_blocks
from finetune_notebooks.train import trained_model
from finetune_notebooks.train import save_atomic
from finetune_notebooks.models import load_model
from finetune_notebooks.train import OutputExists

KEYS = {'method', 'model', 'device', 'precision', 'train_loss', 'eval_loss', 'perplexity_before', 'perplexity_after',
        'train_runtime_s', 'estimated_runtime_s', 'train_tokens', 'tokens_per_s', 'padding_fraction'}

@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('jokes') / 'out'
    return out, run(JokesConfig.smoke(), out)

def test_metrics_and_files(smoke_run):
    out, m = smoke_run
    saved = json.loads((out / 'metrics.json').read_text())
    assert KEYS <= set(saved)
    assert saved['method'] == 'jokes' and saved['model'] == 'tiny-gpt2'
    assert saved['perplexity_before'] > 1 and saved['perplexity_after'] > 1
    assert 0 <= saved['padding_fraction'] < 0.25
    assert (out / 'loss.png').stat().st_size > 0

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

def test_refuses_to_overwrite(smoke_run):
    out, _ = smoke_run
    with pytest.raises(OutputExists, match='already exists'): run(JokesConfig.smoke(), out)

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
