"""The loopback Hub (tools/fakehub) serves what full mode loads, under the real ids, and stops cleanly; the install cells agree."""
import json, os, socket, subprocess, sys, textwrap, time, urllib.error, urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools.fakehub import apply_env, hub_env, serve  # noqa: E402
from tools.fakehub.colab_sim import (common_install_args, install_cell, local_install_args, method_notebooks,  # noqa: E402
                                     package_extras, requirement_extras, with_extras)
from tools.fakehub.server import repo_of, resolve_file, rewrite  # noqa: E402

pytest.importorskip('olah', reason="the loopback Hub needs olah: pip install -e '.[dev]'")

CLIENT = textwrap.dedent('''
    import json, os, time, warnings
    warnings.filterwarnings('ignore')
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging; logging.set_verbosity_error()
    import datasets; datasets.disable_progress_bars()
    from datasets import load_dataset
    out, kw = {}, dict(use_safetensors=True, trust_remote_code=False)
    for name, auto in [('openai-community/gpt2', AutoModelForCausalLM), ('google-bert/bert-base-uncased', AutoModelForSequenceClassification),
                       ('google/flan-t5-small', AutoModelForSeq2SeqLM)]:
        tok, model = AutoTokenizer.from_pretrained(name), auto.from_pretrained(name, **kw)
        out[name] = dict(cls=type(model).__name__, n_tok=len(tok), vocab=model.config.vocab_size, eos=tok.eos_token, pad=tok.pad_token,
                         ids=tok('hello world').input_ids, extra0=tok.convert_tokens_to_ids('<extra_id_0>') if 't5' in name else None)
    for name in ['HuggingFaceH4/ultrachat_200k', 'stanfordnlp/imdb', 'yahma/alpaca-cleaned']:
        dd = load_dataset(name)
        out[name] = {s: dict(n=len(d), features={k: repr(v) for k, v in d.features.items()}, labels=sorted(set(d['label'])) if 'label' in d.features else None,
                             first=d[0]) for s, d in dd.items()}
    out['imdb_train_labels'] = list(load_dataset('stanfordnlp/imdb', split='train')['label'])
    out['csv'] = load_dataset('csv', data_files=os.environ['FTNB_JOKES_URL'], split='train').column_names
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
    for key, repo, file in [('missing_repo', 'nobody/no-such-model', 'config.json'), ('missing_file', 'openai-community/gpt2', 'adapter_config.json')]:
        t = time.monotonic()
        try: hf_hub_download(repo, file); out[key] = 'no error'
        except (RepositoryNotFoundError, EntryNotFoundError) as e: out[key] = [type(e).__name__, round(time.monotonic() - t, 1)]
    print('RESULT' + json.dumps(out, default=str))
''')

@pytest.fixture(scope='module')
def hub(tmp_path_factory):
    "A running loopback Hub and a client result from a fresh HF_HOME (one subprocess: transformers imports once)."
    with serve() as endpoint:
        env = apply_env(os.environ, hub_env(endpoint, tmp_path_factory.mktemp('hf_home')))
        r = subprocess.run([sys.executable, '-c', CLIENT], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        line = next(l for l in r.stdout.splitlines() if l.startswith('RESULT'))
        yield endpoint, json.loads(line[len('RESULT'):])

def _status(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r: return r.status, r.headers.get('x-error-code')
    except urllib.error.HTTPError as e: return e.code, e.headers.get('x-error-code')

def test_models_load_with_real_classes_and_vocabularies(hub):
    _, out = hub
    gpt2, bert, t5 = out['openai-community/gpt2'], out['google-bert/bert-base-uncased'], out['google/flan-t5-small']
    assert (gpt2['cls'], gpt2['n_tok'], gpt2['vocab'], gpt2['eos'], gpt2['pad']) == ('GPT2LMHeadModel', 50257, 50257, '<|endoftext|>', None)
    assert (bert['cls'], bert['n_tok'], bert['ids']) == ('BertForSequenceClassification', 30522, [101, 7592, 2088, 102]) # the real uncased ids
    assert (t5['cls'], t5['n_tok'], t5['vocab'], t5['eos'], t5['pad'], t5['extra0']) == ('T5ForConditionalGeneration', 32100, 32128, '</s>', '<pad>', 32099)
    assert t5['ids'][-1] == 1 # </s> appended

def test_datasets_have_real_splits_columns_and_features(hub):
    _, out = hub
    uc = out['HuggingFaceH4/ultrachat_200k']
    assert set(uc) == {'train_sft', 'test_sft', 'train_gen', 'test_gen'} and all(s['n'] >= 100 for s in uc.values())
    assert uc['train_gen']['features']['messages'] == "List({'content': Value('string'), 'role': Value('string')})"
    assert list(uc['test_sft']['first']) == ['prompt', 'prompt_id', 'messages'] and uc['test_sft']['first']['messages'][0]['role'] == 'user'
    imdb = out['stanfordnlp/imdb']
    assert set(imdb) == {'train', 'test', 'unsupervised'} and imdb['train']['features']['label'] == "ClassLabel(names=['neg', 'pos'])"
    assert imdb['unsupervised']['labels'] == [-1] and imdb['test']['labels'] == [0, 1]
    labels = out['imdb_train_labels']
    assert labels == sorted(labels) and labels[0] == 0 and labels[-1] == 1 # all neg, then all pos, as the real set
    alpaca = out['yahma/alpaca-cleaned']
    assert set(alpaca) == {'train'} and list(alpaca['train']['first']) == ['instruction', 'input', 'output'] and alpaca['train']['n'] >= 300
    assert out['csv'] == ['ID', 'Joke']

def test_missing_repo_and_missing_file_fail_fast_with_the_hubs_errors(hub):
    endpoint, out = hub
    assert out['missing_repo'][0] == 'RepositoryNotFoundError' and out['missing_repo'][1] < 10
    assert out['missing_file'][0] in ('EntryNotFoundError', 'RemoteEntryNotFoundError') and out['missing_file'][1] < 10
    assert _status(f'{endpoint}/openai-community/gpt2/resolve/main/additional_chat_templates/x.jinja') == (404, 'EntryNotFound')
    assert _status(f'{endpoint}/api/models/nobody/nothing')[0] == 401

def test_hub_probe_answers_for_both_ids(hub):
    endpoint, _ = hub
    for repo in ('openai-community/gpt2', 'gpt2'): assert _status(f'{endpoint}/api/models/{repo}') == (200, None)
    assert _status(f'{endpoint}/api/datasets/stanfordnlp/imdb')[0] == 200 # repo info without a revision: load_dataset asks it

def test_server_is_gone_after_the_context():
    with serve() as endpoint: port = int(endpoint.rsplit(':', 1)[1])
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(('127.0.0.1', port)) != 0, f'something still listens on {port}'

def test_path_helpers():
    assert rewrite('/api/datasets/stanfordnlp/imdb') == '/api/datasets/stanfordnlp/imdb/revision/main'
    assert rewrite('/api/models/gpt2') == '/api/models/openai-community/gpt2/revision/main'
    assert rewrite('/gpt2/resolve/main/config.json') == '/openai-community/gpt2/resolve/main/config.json'
    assert rewrite('/api/datasets/stanfordnlp/imdb/tree/main/plain_text') == '/api/datasets/stanfordnlp/imdb/tree/main/plain_text'
    assert repo_of('/datasets/stanfordnlp/imdb/resolve/main/README.md') == ('datasets', 'stanfordnlp/imdb')
    assert repo_of('/google/flan-t5-small/resolve/abc/config.json') == ('models', 'google/flan-t5-small') and repo_of('/api/whoami-v2') is None
    assert resolve_file('/datasets/a/b/resolve/main/plain_text/x.parquet') == 'plain_text/x.parquet'

# ---------------------------------------------------------------- the notebooks' install cells (what colab_sim installs)

def test_install_cells_agree_and_name_defined_extras():
    args = common_install_args() # raises, naming the notebooks, if the cells differ or one is missing
    extras = [e for a in args if (x := requirement_extras(a)) for e in x]
    assert any(requirement_extras(a) is not None for a in args), f"no {args} argument installs this package from GitHub"
    assert set(extras) <= package_extras(), f"install cells ask for extras {sorted(set(extras) - package_extras())} that setup.py does not define"
    assert len(method_notebooks()) == 7

def test_install_args_are_rewritten_to_the_checkout(tmp_path):
    url = 'git+https://github.com/finetune-notebooks/finetune-notebooks'
    assert requirement_extras(url) == () and requirement_extras('peft') is None
    assert requirement_extras(f'finetune-notebooks[offline] @ {url}') == ('offline',)
    assert requirement_extras(f'{url}#egg=finetune-notebooks[offline,dev]') == ('offline', 'dev')
    assert local_install_args(['-q', f'finetune-notebooks[offline] @ {url}'], Path('/x')) == ['-q', 'finetune-notebooks[offline] @ file:///x']
    assert with_extras(['-q', 'finetune-notebooks @ file:///x'], ['offline']) == ['-q', 'finetune-notebooks[offline] @ file:///x']
    assert with_extras(['finetune-notebooks[dev] @ file:///x'], ['offline', 'dev']) == ['finetune-notebooks[dev,offline] @ file:///x']
    nb = tmp_path / '10_x.ipynb'
    nb.write_text(json.dumps({'cells': [{'cell_type': 'code', 'source': ['#| eval: false\n', f'!pip install -q "finetune-notebooks[offline] @ {url}"']}]}))
    assert install_cell(nb) == (0, ['-q', f'finetune-notebooks[offline] @ {url}'])
