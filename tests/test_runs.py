"What every method's `run()` leaves behind, checked once for all six: metrics.json with the config, loss.png, the model, the guard."
import json, math
import pytest
from conftest import SMOKE_METHODS, method_parts
from finetune_notebooks.runs import OutputExists

COMMON = {'method', 'model', 'device', 'precision', 'config', 'train_loss', 'eval_loss', 'train_runtime_s',
          'estimated_runtime_s', 'train_tokens', 'tokens_per_s', 'padding_fraction'}


@pytest.mark.parametrize('smoke_run', list(SMOKE_METHODS), indirect=True)
def test_metrics_json_records_the_run_and_its_config(smoke_run):
    out, metrics = smoke_run
    saved = json.loads((out / 'metrics.json').read_text())
    method = saved['method']
    _, cls = method_parts(method)
    assert COMMON <= set(saved), COMMON - set(saved)
    assert saved['config'] == cls.smoke().to_dict()  # the effective config, as --print-config shows it
    assert saved['model'] == cls.smoke().model and saved['precision'] in ('fp32', 'bf16', 'fp16')
    assert math.isfinite(saved['train_loss']) and saved['train_loss'] > 0 and saved['tokens_per_s'] > 0
    assert 0 <= saved['padding_fraction'] < 1 and saved['eval_loss'] > 0
    if 'perplexity' in saved: assert saved['perplexity'] == pytest.approx(math.exp(saved['eval_loss']))


@pytest.mark.parametrize('smoke_run', list(SMOKE_METHODS), indirect=True)
def test_loss_plot_and_safetensors_model(smoke_run):
    out, metrics = smoke_run
    assert (out / 'loss.png').stat().st_size > 1000
    assert list((out / 'model').glob('*.safetensors')), f"{metrics['method']}: no safetensors in {out / 'model'}"
    assert not list((out / 'model').glob('*.bin')) and not list(out.glob('.*tmp*'))


@pytest.mark.parametrize('smoke_run', list(SMOKE_METHODS), indirect=True)
def test_refuses_a_folder_that_holds_a_run(smoke_run):
    "The one guard (`runs.check_out_dir`), before anything is loaded: a second run into the same folder needs overwrite or resume."
    out, metrics = smoke_run
    module, cls = method_parts(metrics['method'])
    with pytest.raises(OutputExists, match='is not empty: replace it with --overwrite'): module.run(cls.smoke(), out)
