"Every method's config: commented fields, valid variants, checked values, files that round-trip."
import dataclasses, json
import pytest
from conftest import SMOKE_METHODS, method_parts
from finetune_notebooks.config import ConfigError, RunConfig
from finetune_notebooks.quickstart import BlatherConfig

CONFIGS = [method_parts(m)[1] for m in SMOKE_METHODS] + [BlatherConfig]


@pytest.mark.parametrize('cls', CONFIGS, ids=lambda c: c.__name__)
def test_every_field_has_a_help_text(cls):
    "The field's comment is its --help text: a field without one would be an undocumented flag."
    helps = cls.field_help()
    assert set(helps) == {f.name for f in dataclasses.fields(cls)}
    assert [n for n, h in helps.items() if len(h) < 8] == []


@pytest.mark.parametrize('cls', CONFIGS, ids=lambda c: c.__name__)
def test_variants_are_valid_and_round_trip(cls, tmp_path):
    assert issubclass(cls, RunConfig)
    for mode in ('full', 'offline', 'smoke'):
        cfg = cls.for_mode(mode)
        path = tmp_path / f'{mode}.json'
        path.write_text(json.dumps(cfg.to_dict()))
        assert cls.from_file(path, cls()) == cfg  # what metrics.json and --print-config record reads back
    assert list(cfg.to_dict())[-1] == 'precision' and cfg.precision == 'auto'


@pytest.mark.parametrize('field, value, message', [
    ('epochs', 0, 'epochs: must be greater than 0 (got 0'), ('lr', -1e-3, 'lr: must be greater than 0'),
    ('batch_size', 0, 'batch_size: must be at least 1 (got 0)'), ('max_steps', 0, 'max_steps: must be -1'),
    ('precision', 'fp8', 'precision: must be one of auto, fp32, bf16, fp16'), ('seed', -1, 'seed: must be at least 0'),
    ('warmup', 1.5, 'warmup: must be a share'), ('lr', 'fast', "lr: must be a number (got 'fast')"),
])
@pytest.mark.parametrize('cls', CONFIGS, ids=lambda c: c.__name__)
def test_impossible_values_fail_with_the_field(cls, field, value, message):
    if field not in cls.field_names(): pytest.skip(f'{cls.__name__} has no {field}')
    with pytest.raises(ConfigError, match=message.replace('(', r'\(').replace(')', r'\)')) as e:
        dataclasses.replace(cls.smoke(), **{field: value})
    assert e.value.field == field


def test_method_specific_rules():
    lora, chat, instruct = method_parts('lora')[1], method_parts('chat')[1], method_parts('instruct')[1]
    with pytest.raises(ConfigError, match='lora_r: must be at least 1'): lora(lora_r=0)
    with pytest.raises(ConfigError, match='eval_steps: must be at least 1'): chat(eval_steps=0)
    assert chat(eval_steps=None).eval_steps is None  # None is allowed where the type says so
    with pytest.raises(ConfigError, match='max_source_length: must be at least 2'): instruct(max_source_length=1)
    with pytest.raises(ConfigError, match='epochs: must be a whole number'): method_parts('loop')[1](epochs=2.5)


def test_unknown_setting_in_a_file_lists_the_fields(tmp_path):
    cls = method_parts('jokes')[1]
    (tmp_path / 'run.yaml').write_text('learning_rate: 0.001\n')
    with pytest.raises(ConfigError, match=r'run.yaml: learning_rate: unknown setting for JokesConfig; its settings are model, data, text_column'):
        cls.from_file(tmp_path / 'run.yaml')
