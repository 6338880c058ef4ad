"""The lesson notebooks' prose does not contradict their saved outputs, where a machine can check it.

Three kinds of claim are checked, sentence by sentence, in the markdown of nbs/10-16:
- a precision tied to this machine ("bf16 on this CPU", "fp32 here") must be the precision the saved outputs show
  (a sentence naming both bf16 and fp32 says both, and passes);
- a metric value ("accuracy 0.840", "exact match rose from 0.00 to 0.07") must appear in the saved outputs at the
  precision the prose prints it with;
- a duration ("took 28 s", "estimated 1 min 05 s") must appear in the saved outputs (within 15% after "about").
Sentences about other machines or expectations (Colab, T4, GPU, the article, "expect") are not checkable and skipped.
"""
import json, re
from pathlib import Path
import pytest

NBS = Path(__file__).resolve().parents[1] / 'nbs'
LESSONS = sorted(NBS.glob('1[0-6]_*.ipynb'))

ELSEWHERE = re.compile(r"\b(expect\w*|Colab|T4|A100|GPU|CUDA|article|published|typically|should|would|could|Hub|full mode|"
                       r"bf16 instructions|exercise|try)\b|≈", re.I)
HERE = re.compile(r"\b(here|this (?:CPU|machine|page)|(?:in |on )?(?:this|our) run|these outputs|saved outputs)\b", re.I)
PRECISION = re.compile(r"\b(bf16|fp32)\b")
METRIC = re.compile(r"\b(accuracy|exact match|ROUGE(?:-[12L])?|F1|perplexity|eval(?:uation)? loss|reached|scored)\b", re.I)
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(%?)(?![\w.]*\d)")
DURATION = re.compile(r"\b(took|takes|in|estimated?|estimate was)\s+(?:about\s+|~)?((?:\d+ h )?(?:\d+ min )?\d+(?:\.\d)? ?s)\b")


def cells(nb_path):
    return json.loads(nb_path.read_text())['cells']


def sentences(nb_path) -> list[str]:
    "Markdown sentences (code spans and links kept as text; headings and list items split)."
    md = '\n'.join(''.join(c['source']) for c in cells(nb_path) if c['cell_type'] == 'markdown')
    md = re.sub(r'```.*?```', ' ', md, flags=re.S)  # fenced code is not prose
    return [s.strip() for s in re.split(r'(?<=[.!?])\s+(?=[A-Z(`*])|\n\s*\n|\n\s*[-*|#]', md) if s.strip()]


def output_text(nb_path) -> str:
    "Everything the saved outputs show as text (streams, plain text, HTML tables, markdown)."
    out = []
    for c in cells(nb_path):
        for o in c.get('outputs', []):
            out.append(''.join(o.get('text', '')))
            for kind in ('text/plain', 'text/html', 'text/markdown'):
                out.append(''.join(o.get('data', {}).get(kind, '')))
    return re.sub(r'<[^>]+>', ' ', '\n'.join(out))


def output_numbers(text:str) -> list[float]:
    return [float(x) for x in re.findall(r'(?<![\w.])-?\d+\.\d+(?:e-?\d+)?|(?<![\w.])\d+(?![\w.])', text)]


def shows_number(value:str, percent:bool, numbers:list) -> bool:
    "True if a saved number prints as `value` at the same decimals (a percentage may be a share of 1)."
    x, d = float(value), len(value.split('.')[1]) if '.' in value else 0
    for y in numbers:
        if round(y, d) == x: return True
        if percent and 0 <= y <= 1 and round(100 * y, d) == x: return True
    return False


def seconds(text:str) -> float:
    h = re.search(r'(\d+) h', text); m = re.search(r'(\d+) min', text); s = re.search(r'(\d+(?:\.\d)?) ?s\b', text)
    return sum(float(g.group(1)) * k for g, k in ((h, 3600), (m, 60), (s, 1)) if g)


def contradictions(nb_path) -> list[str]:
    "Prose claims about this run that the saved outputs contradict."
    out = output_text(nb_path)
    shown_prec = set(re.findall(r"precision\W{1,6}(bf16|fp32|fp16)", out))
    numbers, durations = output_numbers(out), [seconds(t) for t in re.findall(r'(?:\d+ h )?(?:\d+ min )?\d+(?:\.\d)? s\b', out)]
    bad = []
    for s in sentences(nb_path):
        if ELSEWHERE.search(s): continue
        precs = set(PRECISION.findall(s))
        if len(precs) == 1 and HERE.search(s) and shown_prec and not precs & shown_prec:
            bad.append(f"says {precs.pop()} for this machine; outputs show {', '.join(sorted(shown_prec))}: {s[:120]}")
        checked = set()
        for m in METRIC.finditer(s):
            clause = re.split(r'[;:]|\band\b(?= the)', s[m.end():])[0][:80]
            clause = re.sub(r'(?i)\bROUGE-(?:Lsum|[12L])\b', lambda r: ' ' * len(r.group(0)), clause)  # a metric's name, not a value
            for n in NUMBER.finditer(clause):
                pos, (value, pct) = m.end() + n.start(), n.groups()
                if pos in checked: continue
                checked.add(pos)
                if not shows_number(value, bool(pct), numbers):
                    bad.append(f"{m.group(1)} {value}{pct} is not in the saved outputs: {s[:120]}")
        for m in DURATION.finditer(s):
            want, about = seconds(m.group(2)), bool(re.search(r'about|~', m.group(0)))
            if not any(abs(d - want) <= (0.15 * want if about else 0.51) for d in durations):
                bad.append(f"'{m.group(0)}' matches no duration in the saved outputs: {s[:120]}")
    return bad


@pytest.mark.parametrize('nb_path', LESSONS, ids=lambda p: p.stem)
def test_prose_agrees_with_saved_outputs(nb_path):
    assert contradictions(nb_path) == []


def test_the_checker_catches_contradictions(tmp_path):
    "A made-up notebook whose prose contradicts its outputs on each kind of claim."
    md = lambda s: {'cell_type': 'markdown', 'source': [s], 'metadata': {}}
    code = lambda text: {'cell_type': 'code', 'source': ['x'], 'metadata': {}, 'outputs': [{'output_type': 'stream', 'name': 'stdout', 'text': [text]}]}
    nb = {'cells': [code("precision  fp32\naccuracy 0.8412\nTraining completed in 28 s (estimate was 31 s)\n"),
                    md("On this CPU the model trained in bf16. Accuracy reached 0.84 after one epoch."),
                    md("Accuracy reached 0.91 after one epoch. Training took 45 s. The estimate was about 30 s."),
                    md("On a T4 expect accuracy 0.93 in bf16. Here it ran in fp32 and took 28 s."),
                    md("ROUGE counts overlapping words (ROUGE-1), word pairs (ROUGE-2) and the longest common sequence (ROUGE-L).")]}
    p = tmp_path / '10_fake.ipynb'; p.write_text(json.dumps(nb))
    bad = contradictions(p)
    assert len(bad) == 3, bad
    assert 'says bf16 for this machine' in bad[0] and 'Accuracy 0.91' in bad[1] and "'took 45 s'" in bad[2]
