"Quickstart end to end in smoke mode: the three lines on a fresh file, stats, save/load, bad input, and the CLI path."
import math, os, subprocess, sys
from pathlib import Path
import pytest
from finetune_notebooks.data import DataError
from finetune_notebooks.quickstart import Blather, TextTrainer
from finetune_notebooks.runs import OutputExists

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1'}

TEXT = """Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do.
Once or twice she had peeped into the book her sister was reading, but it had no pictures or conversations in it.
"And what is the use of a book," thought Alice, "without pictures or conversations?"
So she was considering in her own mind whether the pleasure of making a daisy-chain would be worth the trouble.
Suddenly a White Rabbit with pink eyes ran close by her.

There was nothing so very remarkable in that, nor did Alice think it so very much out of the way to hear the Rabbit say to itself, "Oh dear! Oh dear! I shall be late!" but when the Rabbit actually took a watch out of its waistcoat-pocket, and looked at it, and then hurried on, Alice started to her feet, for it flashed across her mind that she had never before seen a rabbit with either a waistcoat-pocket, or a watch to take out of it.
Down, down, down. Would the fall never come to an end?
"""

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp('qs') / 'alice.txt'
    path.write_text(TEXT)
    b = Blather(smoke=True)
    return b, b.read(path, epochs=2)

def test_three_lines_and_stats(trained, capsys):
    b, stats = trained
    assert [s['epoch'] for s in stats] == [1, 2]
    assert all(set(s) == {'epoch', 'train_loss', 'valid_loss'} for s in stats)
    assert all(math.isfinite(s['train_loss']) and math.isfinite(s['valid_loss']) for s in stats)
    assert b.stats == stats and b.run['train_runtime_s'] > 0
    text = b.write('Alice was', max_new_tokens=10)
    assert isinstance(text, str) and text.startswith('Alice was')
    assert len(b.write('Alice was', n=2, max_new_tokens=5)) == 2

def test_write_stops_at_eos(trained):
    "The notebook's claim: generation ends where the model emits EOS (here forced on the third new token), not at max_new_tokens."
    from finetune_notebooks.lm import generate_ids
    b, _ = trained
    def force_eos_on_third_call():
        calls = [0]
        def hook(mod, inp, out):
            calls[0] += 1
            if calls[0] == 3: out[..., b.tokenizer.eos_token_id] = 1e4
            return out
        return b.model.lm_head.register_forward_hook(hook)
    h = force_eos_on_third_call()
    try: ids = generate_ids(b.model, b.tokenizer, ['Alice was'], preset='greedy', max_new_tokens=20)[0]
    finally: h.remove()
    h = force_eos_on_third_call()
    try: text = b.write('Alice was', preset='greedy', max_new_tokens=20)
    finally: h.remove()
    assert len(ids) == 2 and b.tokenizer.eos_token_id not in ids  # two tokens, then EOS (cut)
    assert text == 'Alice was' + b.tokenizer.decode(ids, skip_special_tokens=True)

def test_estimate_is_printed_first(tmp_path, capsys):
    path = tmp_path / 'tiny.txt'
    path.write_text('one line\ntwo lines\nthree lines\nfour lines\nfive lines\n')
    Blather(smoke=True).read(path)
    out = capsys.readouterr().out
    assert 'Estimated training time' in out and out.index('Estimated training time') < out.index('Training completed')

def test_a_long_text_without_newlines_trains(tmp_path):
    "2 MB on a single line (the issue's case): cut into blocks by tokens, split into train and validation by blocks."
    one = ' '.join(TEXT.split())
    path = tmp_path / 'one_line.txt'
    path.write_text((one + ' ') * (2_000_000 // (len(one) + 1) + 1))
    assert path.stat().st_size >= 2_000_000 and path.read_text().count('\n') == 0
    b = Blather(smoke=True)
    blocks = b._blocks(path)
    assert len(blocks['test']) > 100 and len(blocks['train']) == b.cfg.max_train_blocks
    stats = b.read(path)
    assert len(stats) == 1 and math.isfinite(stats[0]['valid_loss'])

def test_read_refuses_impossible_epochs(trained, tmp_path):
    from finetune_notebooks.config import ConfigError
    b, _ = trained
    with pytest.raises(ConfigError, match=r'epochs: must be greater than 0 \(got 0'): b.read(tmp_path / 'unused.txt', epochs=0)

def test_save_load_gives_same_greedy_text(trained, tmp_path):
    b, _ = trained
    b.save(tmp_path / 'm')
    b2 = TextTrainer.load(tmp_path / 'm')
    assert (tmp_path / 'm' / 'model.safetensors').exists()
    assert b2.write('The Rabbit', preset='greedy', max_new_tokens=15) == b.write('The Rabbit', preset='greedy', max_new_tokens=15)

def test_save_refuses_non_empty_folder(trained, tmp_path):
    b, _ = trained
    (tmp_path / 'keep.txt').write_text('mine')
    with pytest.raises(OutputExists, match='not empty'): b.save(tmp_path)
    assert (tmp_path / 'keep.txt').read_text() == 'mine' and not (tmp_path / 'config.json').exists()

@pytest.mark.parametrize('name,content,message', [
    ('empty.txt', b'', 'file is empty'),
    ('blank.txt', b'\n\n  \n', 'no text left'),
    ('blob.txt', bytes(range(256)) * 4, 'binary'),
    ('latin.txt', 'caf\xe9 cr\xe8me\n'.encode('latin-1') * 3, 'not UTF-8'),
    ('missing.txt', None, 'file not found'),
])
def test_bad_files_raise_data_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None: path.write_bytes(content)
    with pytest.raises(DataError, match=message): Blather(smoke=True).read(path)

def test_cli_read_then_write(tmp_path):
    path = tmp_path / 'alice.txt'
    path.write_text(TEXT)
    cli = [sys.executable, '-m', 'finetune_notebooks.cli']
    r = subprocess.run([*cli, 'read', str(path), '--smoke', '--out', str(tmp_path / 'm')], capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'Estimated training time' in r.stdout
    r = subprocess.run([*cli, 'write', 'Alice', '--model-dir', str(tmp_path / 'm'), '--n', '2', '--max-new-tokens', '8'],
                       capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith('Alice') and r.stdout.count('Alice') >= 2, r.stdout  # two texts, each starting with the prompt
