"End-to-end smoke run of the jokes method: metrics, loss plot, reloadable model."
import json, math
from dataclasses import replace
import pytest, torch
from finetune_notebooks.jokes import (JokesConfig, run, load_jokes, tokenize_jokes, pack_jokes, sample_jokes, make_joke_trainer, prepare_blocks,
                                      joke_training_args)
from finetune_notebooks.estimate import evaluation_count, total_train_steps
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
    x = tok(['A programmer walks into a bar', 'Why did the'], padding=True, return_tensors='pt').to(model.device)
    with torch.no_grad(): in_trainer = model.eval()(**x).logits # still under the Trainer's autocast when bf16/fp16
    save_atomic(model, tok, tmp_path / 'model')
    again, tok2 = load_model(str(tmp_path / 'model'))
    again = again.to(model.device)  # like with like: the trained model's device, fp32 both
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


@pytest.mark.parametrize('n_blocks,batch_size,grad_accum,epochs,eval_times', [
    (49, 8, 1, 1, 5),    # 7 steps: 4 evaluations (2, 4, 6, 7), not one per step
    (49, 8, 1, 20, 5),   # 140 steps: 5
    (7, 4, 1, 1, 5),     # 2 steps: 2
    (49, 8, 3, 2, 5),    # gradient accumulation: the step count must be the Trainer's
    (300, 8, 1, 3, 1),   # one evaluation, at the end
    (300, 8, 2, 1.5, 7),
])
def test_evaluations_never_exceed_eval_times(tmp_path, n_blocks, batch_size, grad_accum, epochs, eval_times):
    "eval_times is the most evaluations a run makes (the table's rows): a short run gets fewer, never one per step."
    cfg = JokesConfig.offline().updated(batch_size=batch_size, grad_accum=grad_accum, epochs=epochs, eval_times=eval_times)
    args = joke_training_args(cfg, tmp_path / 'ck', n_blocks)
    steps = math.ceil(epochs * math.ceil(math.ceil(n_blocks / batch_size) / grad_accum))  # the Trainer's count (set_initial_training_values)
    n = evaluation_count(args, steps, math.ceil(epochs))
    assert 1 <= n <= min(eval_times, steps), (n, steps, args.eval_steps)
    if steps % eval_times == 0: assert n == eval_times  # as many as asked when they divide the run evenly
    if (n_blocks, epochs) == (49, 1): assert n == 4  # 7 steps, 5 asked: at 2, 4, 6 and 7


def test_step_count_matches_the_trainer(tmp_path):
    "The evaluations are placed from the same step count the Trainer runs, also with gradient accumulation."
    cfg = JokesConfig.smoke().updated(max_steps=-1, epochs=2, grad_accum=3, eval_times=2)
    model, tok = load_model(cfg.model)
    blocks = prepare_blocks(cfg, tok)
    trainer = make_joke_trainer(model, tok, blocks, cfg, tmp_path / 'ck')
    steps = total_train_steps(trainer)
    assert trainer.args.eval_steps == math.ceil(steps / cfg.eval_times)
    assert evaluation_count(trainer.args, steps, 2) <= cfg.eval_times


def test_samples_come_from_one_batched_pass_per_token_with_the_kv_cache():
    "sample_jokes runs all prompts together: one forward per new token, each after the first on one new position (the KV cache)."
    cfg = JokesConfig.smoke().updated(max_new_tokens=12)
    model, tok = load_model(cfg.model)
    widths, forward = [], model.forward
    def counted(*a, **kw):
        ids = kw.get('input_ids', a[0] if a else None)
        widths.append(tuple(ids.shape)); return forward(*a, **kw)
    model.forward = counted
    out = sample_jokes(model, tok, cfg, 'greedy')
    assert len(out) == len(cfg.prompts) and 1 <= len(widths) <= cfg.max_new_tokens
    assert all(w[0] == len(cfg.prompts) for w in widths)      # every prompt in every call
    assert all(w[1] == 1 for w in widths[1:]), widths          # cached: one new position per call
