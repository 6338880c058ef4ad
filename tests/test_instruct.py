"Checks of finetune_notebooks.instruct: prompts, -100 label padding, the T5 precision rule, metrics, and a smoke run through `run`."
import json
import pytest, torch
from finetune_notebooks import core, models
from finetune_notebooks.instruct import (InstructConfig, format_prompt, instruct_collator, generation_metrics, t5_precision,
                                         instruct_args, load_instruct_data, generate_answers, decode_eval_pred, answer_precision,
                                         task_type, scores_by_task, GENERATED_TASKS)

METHOD = 'instruct'  # the session's smoke run (tests/conftest.py); tests/test_runs.py checks what every method writes
KEYS = ('by_task', 'exact_match_before', 'exact_match_after', 'rouge1_before', 'rouge1_after', 'rougeL_before', 'rougeL_after', 'perplexity')


def test_format_prompt():
    assert format_prompt('Translate to French.', 'Good day') == 'Instruction: Translate to French.\nInput: Good day'
    assert format_prompt('What is 2 plus 3?', '') == 'Instruction: What is 2 plus 3?'
    assert format_prompt(' What is 2 plus 3? ', None) == format_prompt('What is 2 plus 3?', '   ')
    assert 'Input' not in format_prompt('Name a colour.')
    with pytest.raises(ValueError, match='instruction is empty'): format_prompt('', 'text')


def test_labels_padded_with_minus_100():
    model, tok = models.load_model('tiny-t5', task='seq2seq')
    answers = ['apple fig pear', 'yes', 'the capital is Paris']
    feats = [{'input_ids': tok(format_prompt('Do it.', a)).input_ids, 'labels': tok(text_target=a).input_ids} for a in answers]
    batch = instruct_collator(tok, model)(feats)
    for f, row in zip(feats, batch['labels'].tolist()):
        n = len(f['labels'])
        assert row[:n] == f['labels'] # every real token kept, none is -100
        assert all(x == -100 for x in row[n:]) # every pad position is -100
    assert (batch['labels'] == tok.pad_token_id).sum() == 0 # no pad id left for the loss to learn
    assert (batch['input_ids'] == -100).sum() == 0 # prompts are padded with the real pad id


def test_t5_never_fp16():
    for dev, cap in [('cuda', (7, 5)), ('cuda', (8, 0)), ('cuda', (6, 1)), ('cpu', None), ('mps', None)]:
        for mt in ('t5', 'mt5', 'T5'):
            assert core.precision_for(dev, cap, model_type=mt).name != 'fp16', (dev, cap, mt)
    assert core.precision_for('cuda', (7, 5), model_type='gpt2').name == 'fp16' # the rule is T5-specific
    assert t5_precision().name != 'fp16'
    assert not instruct_args(InstructConfig.smoke(), '/tmp/unused').fp16
    auto = core.precision_for('cuda', (8, 0), model_type='t5')  # asked for on a GPU, fp16 is still refused for T5
    with pytest.raises(core.PrecisionError, match='fp16'): core.force_precision(auto, 'fp16', "precision='fp16'", 'cuda', 't5')


def test_generation_metrics_by_hand():
    m = generation_metrics(['Paris', ' apple fig pear', 'pear fig'], ['Paris', 'apple fig pear', 'apple fig pear'])
    assert m['exact_match'] == pytest.approx(2 / 3)
    assert m['rouge1'] == pytest.approx((1 + 1 + 0.8) / 3) # 'pear fig' vs 3 words: P=1, R=2/3, F=0.8
    assert m['rouge2'] < m['rouge1'] # 'pear fig' shares no word pair with 'apple fig pear'
    assert m['rougeL'] == pytest.approx((1 + 1 + 0.4) / 3)
    assert generation_metrics(['a b'], ['c d']) == {'exact_match': 0.0, 'rouge1': 0.0, 'rouge2': 0.0, 'rougeL': 0.0}
    with pytest.raises(ValueError, match='2 predictions for 1 references'): generation_metrics(['a', 'b'], ['a'])


def test_decode_drops_minus_100():
    _, tok = models.load_model('tiny-t5', task='seq2seq')
    ids = tok(['Paris', 'apple fig pear'], padding=True).input_ids
    labels = [[i if i != tok.pad_token_id else -100 for i in row] for row in ids]
    assert decode_eval_pred((ids, labels), tok) == (['Paris', 'apple fig pear'], ['Paris', 'apple fig pear'])


def test_metrics_json(smoke_run):
    out, metrics = smoke_run
    written = json.loads((out / 'metrics.json').read_text())
    for k in KEYS: assert k in written, f'metrics.json lacks {k}'
    assert written['precision'] != 'fp16' and 0 <= written['exact_match_after'] <= 1


def test_saved_model_reloads_with_same_answers(smoke_run):
    out, metrics = smoke_run
    cfg = InstructConfig.smoke()
    model, tok = models.load_model(str(out / 'model'), task='seq2seq')
    test = load_instruct_data(cfg)['test']
    answers = generate_answers(model, tok, test['instruction'], test['input'], cfg.max_new_tokens, cfg.max_source_length)
    m = generation_metrics(answers, test['output'])
    assert m['exact_match'] == pytest.approx(metrics['exact_match_after']) # the Trainer's last evaluation, reproduced
    assert m['rougeL'] == pytest.approx(metrics['rougeL_after'], abs=1e-6)



def test_answers_use_the_models_device_not_the_sessions(monkeypatch):
    "A model on the CPU in a CUDA session generates as a CPU model: the precision comes from `model.device`."
    model, tok = models.load_model('tiny-t5', task='seq2seq')
    cpu = generate_answers(model, tok, ['Say hi.', 'Sort the words.'], ['', 'b a'], max_new_tokens=4)
    monkeypatch.setattr(core, 'get_device', lambda: torch.device('cuda'))
    assert answer_precision(model).name == core.choose_precision('cpu', model_type='t5').name
    assert generate_answers(model, tok, ['Say hi.', 'Sort the words.'], ['', 'b a'], max_new_tokens=4) == cpu
    assert answer_precision(model, 'fp32').name == 'fp32'  # the run's precision, when given, wins


def test_task_types():
    "Every generated instruction has a task type; any other data is grouped by its first word."
    assert task_type('Write this in capital letters.') == 'upper case' and task_type('What is the capital of Peru?') == 'capital'
    assert task_type('Explain why the sky is blue.', generated=False) == 'Explain'
    dd = load_instruct_data(InstructConfig.smoke())
    assert dd['train'].column_names == ['instruction', 'input', 'output', 'task']
    assert set(dd['train']['task']) <= set(GENERATED_TASKS)


def test_scores_by_task_by_hand():
    s = scores_by_task({'task': ['sum', 'sum', 'sort'], 'output': ['4', '7', 'a b']}, ['4', '8', 'b a'])
    assert list(s.index) == ['sum', 'sort'] and s.loc['sum', 'n'] == 2
    assert s.loc['sum', 'exact_match'] == pytest.approx(0.5) and s.loc['sort', 'exact_match'] == 0
    assert s.loc['sort', 'rougeL'] == pytest.approx(0.5)  # 'b a' vs 'a b': one word in order of two
