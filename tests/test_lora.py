"End-to-end checks of finetune_notebooks.lora: a smoke run through `run`, targets, adapter and merged reloads."
import json
import pytest, torch
from peft import get_peft_model
from finetune_notebooks import models, train
from finetune_notebooks.train import trained_model
from finetune_notebooks.classify import EXAMPLE_TEXTS, load_classifier, load_classify_data, classify_trainer, predict, tokenize_texts
from finetune_notebooks.runs import save_atomic
from finetune_notebooks.lora import LoraRunConfig, lora_config, add_lora, load_adapter, merge_lora, dir_size_mb

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
    x = tok(['a fine day', 'a dreadful day'], padding=True, return_tensors='pt')
    with torch.no_grad(): want = adapted(**x).logits
    merged = merge_lora(adapted)
    merged.save_pretrained(tmp_path / 'merged'); tok.save_pretrained(tmp_path / 'merged')
    plain, tok2 = models.load_model(str(tmp_path / 'merged'), task='seq-cls')
    assert not hasattr(plain, 'peft_config')
    with torch.no_grad(): torch.testing.assert_close(plain(**tok2(['a fine day', 'a dreadful day'], padding=True, return_tensors='pt')).logits, want, atol=1e-4, rtol=1e-4)
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
    x = tok(list(EXAMPLE_TEXTS), padding=True, return_tensors='pt')
    with torch.no_grad(): in_trainer = model.eval()(**x).logits # still under the Trainer's autocast when bf16/fp16
    save_atomic(model, tok, tmp_path / 'adapter')
    adapted, _ = load_adapter(tmp_path / 'adapter', cfg)
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
