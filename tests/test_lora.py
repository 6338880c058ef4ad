"End-to-end checks of finetune_notebooks.lora: a smoke run through `run`, targets, adapter and merged reloads."
import json
import pytest, torch
from peft import get_peft_model
from finetune_notebooks import models, train
from finetune_notebooks.train import trained_model
from finetune_notebooks.classify import EXAMPLE_TEXTS, load_classifier, load_classify_data, classify_trainer, predict, tokenize_texts
from finetune_notebooks.runs import save_atomic
from finetune_notebooks.classify import ClassifyConfig
from finetune_notebooks.lora import (LoraRunConfig, lora_config, add_lora, load_adapter, merge_lora, dir_size_mb, weight_drift,
                                    rank_sweep, sweep_point, plot_rank_sweep, draw_lora)

METHOD = 'lora'  # the session's smoke run (tests/conftest.py); tests/test_runs.py checks what every method writes
KEYS = ('accuracy_before', 'f1_before', 'accuracy_after', 'f1_after', 'trainable_share', 'peak_memory_mb', 'checkpoint_mb')


def test_lora_metrics(smoke_run):
    out, _ = smoke_run
    m = json.loads((out / 'metrics.json').read_text())
    for k in KEYS: assert k in m, f'metrics.json lacks {k}'
    assert 0 < m['trainable_share'] < 0.5 and m['config']['lora_r'] == LoraRunConfig.smoke().lora_r


def test_adapter_reloads_and_merges(smoke_run, tmp_path):
    out, _ = smoke_run
    cfg = LoraRunConfig.smoke()
    adapted, tok = load_adapter(out / 'model', cfg)
    x = tok(['a fine day', 'a dreadful day'], padding=True, return_tensors='pt').to(adapted.device)
    with torch.no_grad(): want = adapted(**x).logits
    merged = merge_lora(adapted)
    merged.save_pretrained(tmp_path / 'merged'); tok.save_pretrained(tmp_path / 'merged')
    plain, tok2 = models.load_model(str(tmp_path / 'merged'), task='seq-cls')
    plain = plain.to(adapted.device)
    assert not hasattr(plain, 'peft_config')
    with torch.no_grad(): torch.testing.assert_close(plain(**tok2(['a fine day', 'a dreadful day'], padding=True, return_tensors='pt').to(plain.device)).logits, want, atol=1e-4, rtol=1e-4)
    assert dir_size_mb(out / 'model') < dir_size_mb(tmp_path / 'merged')


def test_reloaded_adapter_predicts_as_the_trained_model(smoke_run):
    "The adapter reloaded onto a fresh base gives exactly what `run` recorded from the trained model in memory."
    out, metrics = smoke_run
    adapted, tok = load_adapter(out / 'model', LoraRunConfig.smoke())
    assert predict(adapted, tok, EXAMPLE_TEXTS, LoraRunConfig.smoke().max_length) == metrics['predictions']


def test_reload_and_merge_match_the_unwrapped_trained_model(tmp_path):
    "Like with like: the trained peft model without the Trainer's autocast equals its reloaded adapter and its merged copy."
    cfg = LoraRunConfig.smoke()
    base, tok = load_classifier(cfg)
    model = add_lora(base, cfg)
    trainer = classify_trainer(model, tok, tokenize_texts(load_classify_data(cfg), tok, cfg.max_length), cfg, tmp_path / 'ck')
    trainer.train()
    x = tok(list(EXAMPLE_TEXTS), padding=True, return_tensors='pt').to(model.device) # the Trainer put the model on its device
    with torch.no_grad(): in_trainer = model.eval()(**x).logits # still under the Trainer's autocast when bf16/fp16
    save_atomic(model, tok, tmp_path / 'adapter')
    adapted, _ = load_adapter(tmp_path / 'adapter', cfg)
    adapted = adapted.to(model.device) # compare on one device
    with torch.no_grad(): want = adapted(**x).logits
    if trainer.args.bf16 or trainer.args.fp16: # without unwrapping, this comparison fails
        assert not torch.allclose(in_trainer, want, rtol=1.3e-6, atol=1e-5)
    plain = trained_model(trainer).eval()
    with torch.no_grad(): got = plain(**x).logits
    torch.testing.assert_close(got, want)
    with torch.no_grad(): merged = merge_lora(plain)(**x).logits
    torch.testing.assert_close(merged, want, atol=1e-5, rtol=1e-4)
    assert merged.argmax(-1).tolist() == want.argmax(-1).tolist()


def test_minilm_share_under_5_percent():
    model, _ = models.load_model('minilm', task='seq-cls')
    share = models.parameter_share(add_lora(model, LoraRunConfig(lora_r=8)))
    assert 0 < share < 0.05


@pytest.mark.filterwarnings('ignore:`is_gradient_checkpointing` is deprecated:FutureWarning') # peft's call, as in lora._quiet_peft
@pytest.mark.parametrize('name,targets,head', [('tiny-bert', ('query', 'value'), 'classifier'), ('tiny-gpt2', ('c_attn',), 'score')])
def test_only_intended_modules_trainable(name, targets, head):
    model, _ = models.load_model(name, task='seq-cls')
    pm = get_peft_model(model, lora_config(model))
    names = [n for n, p in pm.named_parameters() if p.requires_grad]
    assert names and all(('lora_' in n and any(t in n for t in targets)) or head in n for n in names)
    assert all(any(t in n for n in names) for t in targets) and any(head in n for n in names)
    assert lora_config(model).fan_in_fan_out == (name == 'tiny-gpt2')


def test_unknown_architecture_message():
    class Cfg: model_type = 't5'
    class M: config = Cfg()
    with pytest.raises(ValueError, match="model_type 't5'"): lora_config(M())


def test_lora_recipes_use_loras_learning_rate():
    "Every LoRA recipe uses 5e-4 (the notebook's argument: at 5e-5 the adapters barely move); full fine-tuning keeps 5e-5."
    assert [LoraRunConfig.for_mode(m).lr for m in ('full', 'offline', 'smoke')] == [5e-4] * 3
    assert ClassifyConfig().lr == 5e-5
    assert 'ten times' in LoraRunConfig.field_help()['lr']


def test_weight_drift_moves_snapshots_to_the_weights_device():
    "Snapshots kept elsewhere (the CPU) are compared on the weight's own device; an unchanged model drifts 0."
    lin = torch.nn.Linear(3, 3)
    start = {n: p.detach().cpu().clone() for n, p in lin.named_parameters()}
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    assert weight_drift(start, lin.to(dev)) == 0.0
    with torch.no_grad(): lin.weight.add_(1.0)
    assert weight_drift(start, lin) > 0


def test_rank_sweep_grows_the_share_with_the_rank(tmp_path):
    cfg = LoraRunConfig.smoke()
    _, tok = load_classifier(cfg)
    tokenized = tokenize_texts(load_classify_data(cfg), tok, cfg.max_length)
    rows = rank_sweep(cfg, tok, tokenized, tmp_path, ranks=(1, 2, 8), steps=1)
    assert [r['r'] for r in rows] == [1, 2, 8] and rows[0]['share'] < rows[1]['share'] < rows[2]['share'] < 0.5
    assert all(0 <= r['accuracy'] <= 1 for r in rows)
    full = sweep_point(load_classifier(ClassifyConfig.smoke())[0], tok, tokenized, ClassifyConfig.smoke().updated(max_steps=1), tmp_path)
    assert full['share'] == 1.0 and not any(tmp_path.glob('checkpoint-*')) # no checkpoints in a sweep
    assert len(plot_rank_sweep(rows, full).axes[0].lines) == 3


def test_lora_diagram_labels_the_shapes():
    texts = [t.get_text() for t in draw_lora(d=768, r=4, alpha=8).axes[0].texts]
    assert any('768 × 768' in t for t in texts) and any('768 × 4' in t for t in texts) and any('4 × 768' in t for t in texts)
