"""Build the docs site without Quarto: `_proc/` notebooks -> Markdown pages -> MkDocs (Material) -> `_site/`.

`python tools/docsite.py` runs `tools/docs.py` (nbdev's processing: show_doc, directives, frontmatter into
`_proc/`), converts each processed notebook into a Markdown page here, and renders the pages with MkDocs and
the Material theme into `_site/` (nothing is executed; saved outputs are shown). Machines with Quarto keep
using `nbdev_docs` (the deploy workflow); this is the path for machines and CI runs without it.

    pip install mkdocs mkdocs-material latex2mathml       # the dev extra
    python tools/docsite.py [--reuse-proc]                 # -> _site/ (and _site_src/: the pages and mkdocs.yml)
    python -m http.server -d _site 8000                    # then open http://127.0.0.1:8000/

Why this renderer. Our own small notebook-to-Markdown step plus mkdocs-material: (1) it installs from PyPI
alone as pure-Python wheels (mkdocs, mkdocs-material, pymdown-extensions, latex2mathml; no Node, no
binaries, nothing downloaded at build or view time: fonts and icons are bundled, math becomes MathML);
(2) it is fast on 2 cores: no notebook is executed and MkDocs renders the 16 pages in a few seconds
(Sphinx + myst-nb takes several times longer and brings a large dependency tree); (3) the lunr search
index is built at build time and searched in the browser, offline; (4) the Quarto cell options are
applied here, by us, the way Quarto applies them (`include`, `echo`, `output`, `output: asis`, `code-fold`,
`code-summary`, `warning`), whereas mkdocs-jupyter and myst-nb only know their own cell tags and would
show the `#| ` lines. Page URLs are the Quarto ones (`gpt2_jokes.html`), so nbdev's doc links resolve.
"""
import argparse, base64, html, json, logging, re, shutil, subprocess, sys, time
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROC, BUILD, SITE = ROOT / '_proc', ROOT / '_site_src', ROOT / '_site'  # processed nbs, generated sources, the site
ASSETS = Path(__file__).resolve().parent / 'site_assets'
# Images the notebooks link from other hosts, served from the site instead so that it works offline.
LOCAL_IMAGES = {'https://colab.research.google.com/assets/colab-badge.svg': 'assets/colab-badge.svg'}
OPTION_RE = re.compile(r'^\s*#\|\s?(.*)$')  # a Quarto/nbdev cell option line
CODE_RE = re.compile(r'(^(`{3,}|~{3,}).*?^\2[ \t]*$|`[^`\n]+`)', re.S | re.M)  # fenced blocks and code spans
ANSI_RE = re.compile(r'\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[@-Z\\-_]')


def pandoc_slug(value: str, separator: str = '-') -> str:
    "Heading id as Pandoc (Quarto) makes it, so nbdev's `page.html#name` links land: `JokesConfig.offline` -> `jokesconfig.offline`."
    s = re.sub(r'[^\w\s.-]', '', value.strip().lower())  # keep letters, digits, _ - .
    s = re.sub(r'\s', separator, s)
    s = re.sub(r'^[^a-z]+', '', s)  # drops everything before the first letter
    return s or 'section'


def cell_options(source: str) -> tuple:
    "The cell's `#| key: value` options (leading lines, read as YAML) and its code without any `#| ` line."
    lines, head = source.splitlines(), []
    for l in lines:
        m = OPTION_RE.match(l)
        if not m: break
        head.append(m.group(1))
    try: opts = yaml.safe_load('\n'.join(head)) or {} if head else {}
    except yaml.YAMLError: opts = {}
    if not isinstance(opts, dict): opts = {}
    code = '\n'.join(l for l in lines if not OPTION_RE.match(l)).strip('\n')
    return opts, code


def strip_ansi(text: str) -> str:
    "Text without ANSI escape codes (colours, cursor moves)."
    return ANSI_RE.sub('', text)


def apply_carriage_returns(text: str) -> str:
    "What a terminal (and Jupyter) shows for text with `\\r`: each `\\r` returns to the line start and overwrites."
    out = []
    for line in text.split('\n'):
        shown = ''
        for part in line.split('\r'): shown = part + shown[len(part):]
        out.append(shown)
    return '\n'.join(out)


def output_text(text) -> str:
    "Notebook text (a string or list of lines) as shown: joined, ANSI codes stripped, then `\\r` applied."
    return apply_carriage_returns(strip_ansi(''.join(text) if isinstance(text, list) else text))


def frontmatter(nb: dict) -> dict:
    "The YAML frontmatter nbdev put in the first raw cell of a processed notebook ({} if none)."
    cells = nb.get('cells', [])
    if not cells or cells[0]['cell_type'] != 'raw': return {}
    m = re.match(r'\s*---\n(.*?)\n---', ''.join(cells[0]['source']), re.S)
    return (yaml.safe_load(m.group(1)) or {}) if m else {}


def plain_title(title) -> str:
    "A frontmatter title as plain text for `<title>` and the sidebar (`The `ftnb` command line` -> `The ftnb command line`)."
    return re.sub(r'(`+|\*\*?|__?)(.+?)\1', r'\2', str(title))


def page_stem(nb_path: Path, fm: dict) -> str:
    "A page's file name without suffix: the Quarto `output-file` (`gpt2_jokes` for 10_gpt2_jokes.ipynb)."
    return Path(fm['output-file']).stem if fm.get('output-file') else nb_path.stem


def outside_code_apply(md: str, fn: callable) -> str:
    "`md` with `fn` applied to the text outside fenced code blocks and code spans."
    out, pos = [], 0
    for m in CODE_RE.finditer(md):
        out += [fn(md[pos:m.start()]), m.group(0)]
        pos = m.end()
    return ''.join(out + [fn(md[pos:])])


def rewrite_links(text: str, pages: dict, doc_url: str) -> str:
    "Links to notebooks (`10_gpt2_jokes.ipynb#x`, `nbs/10_gpt2_jokes.ipynb`) or to the published site (`{doc_url}/core.html#x`) as page links; code is left alone."
    def to_page(m):
        pre, target, frag = m.group(1), m.group(2), m.group(3) or ''
        name = target[len(doc_url) + 1:] if doc_url and target.startswith(doc_url + '/') else target
        parts = Path(name).parts  # a page here, or in nbs/ as written for the README at the repo root
        md = pages.get(parts[-1]) if len(parts) == 1 or parts[:-1] == ('nbs',) else None
        return f"{pre}{md}{frag}" if md else m.group(0)
    url = re.escape(doc_url) + r'/[\w.-]+\.html' if doc_url else r'(?!)'
    pat = rf'''(\]\(\s*|href=["']|src=["'])((?:{url})|(?![a-z][\w+.-]*:|/|#)[^)"'\s#]+\.(?:ipynb|html))(#[^)"'\s]*)?'''
    def outside_code(t):
        t = re.sub(pat, to_page, t)
        for remote, local in LOCAL_IMAGES.items(): t = t.replace(remote, local)
        return t
    return outside_code_apply(text, outside_code)


def math_to_mathml(md: str) -> str:
    "`$...$` and `$$...$$` outside code as MathML, which browsers render without a script or a network."
    from latex2mathml.converter import convert
    def conv(m):
        disp, tex = m.group(1) is not None, m.group(1) or m.group(2)
        try: mathml = convert(tex.strip(), display='block' if disp else 'inline')
        except Exception: return m.group(0)
        # Python-Markdown counts <math> as a block tag: at a line start it would split the paragraph
        return f'<div class="math">{mathml}</div>' if disp else f'<span class="math">{mathml}</span>'
    pat = r'\$\$(.+?)\$\$|(?<![\\$\w])\$(?![\s$])([^$\n]+?)(?<![\s\\])\$(?![\w$])'
    return outside_code_apply(md, lambda t: re.sub(pat, conv, t, flags=re.S))


def fenced(code: str, lang: str = 'python') -> str:
    "A fenced code block, with a fence longer than any backtick run inside."
    fence = '`' * max(3, 1 + max((len(r) for r in re.findall('`+', code)), default=0))
    return f"{fence}{lang}\n{code}\n{fence}"


def pre_block(text: str, kind: str) -> str:
    "Plain output text in a `<pre>` (HTML-escaped) inside a Quarto-style `cell-output` div."
    return f'<div class="cell-output cell-output-{kind}">\n<pre><code>{html.escape(text.rstrip())}</code></pre>\n</div>'


def render_output(out: dict, opts: dict, image: callable) -> str:
    "One output as Markdown/HTML: asis or rich Markdown, HTML, images (via `image(bytes, ext)` -> url), else text."
    kind = out['output_type']
    if kind == 'stream':
        if out.get('name') == 'stderr' and opts.get('warning') is False: return ''
        return pre_block(output_text(out['text']), out.get('name', 'stdout'))
    if kind == 'error': return pre_block(output_text('\n'.join(out.get('traceback', []))), 'error')
    data = out.get('data', {})
    def get(k): return ''.join(data[k]) if isinstance(data[k], list) else data[k]
    if 'text/markdown' in data and opts.get('output') == 'asis': return get('text/markdown')
    if 'text/html' in data: return f'<div class="cell-output cell-output-display">\n{get("text/html").strip()}\n</div>'
    for mime, ext in (('image/svg+xml', 'svg'), ('image/png', 'png'), ('image/jpeg', 'jpg')):
        if mime not in data: continue
        raw = get(mime).encode() if ext == 'svg' else base64.b64decode(get(mime))
        alt = html.escape(strip_ansi(get('text/plain')) if 'text/plain' in data else 'figure', quote=True)
        return f'<div class="cell-output cell-output-display">\n<img src="{image(raw, ext)}" alt="{alt}">\n</div>'
    if 'text/markdown' in data: return f'<div class="cell-output cell-output-display" markdown="1">\n\n{get("text/markdown")}\n\n</div>'
    if 'text/plain' in data: return pre_block(output_text(get('text/plain')), 'display')
    return ''


def merge_streams(outputs: list) -> list:
    "Consecutive stream outputs of the same name as one (as Jupyter shows them)."
    merged = []
    for o in outputs:
        if merged and o['output_type'] == 'stream' and merged[-1]['output_type'] == 'stream' and merged[-1].get('name') == o.get('name'):
            merged[-1] = {**merged[-1], 'text': output_text(merged[-1]['text']) + output_text(o['text'])}
        else: merged.append(o)
    return merged


def render_code_cell(cell: dict, image: callable) -> str:
    "A code cell with its Quarto options applied: include, echo, output (false/asis), code-fold, warning."
    opts, code = cell_options(''.join(cell['source']))
    if opts.get('include') is False: return ''
    parts = []
    if opts.get('echo', True) is not False and code.strip():
        block = fenced(code)
        fold = opts.get('code-fold')
        if fold in (True, 'true', 'show'):
            summary = html.escape(str(opts.get('code-summary', 'Code')))
            block = f'<details class="code-fold" markdown="1"{" open" if fold == "show" else ""}>\n<summary>{summary}</summary>\n\n{block}\n\n</details>'
        parts.append(block)
    if opts.get('output', True) is not False:
        parts += [s for o in merge_streams(cell.get('outputs', [])) if (s := render_output(o, opts, image).strip())]
    return '\n\n'.join(parts)


def notebook_page(nb: dict, stem: str, files_dir: Path, pages: dict, doc_url: str) -> str:
    "A processed notebook as one Markdown page: title and description from the frontmatter, then its cells."
    fm, n = frontmatter(nb), [0]
    def image(raw: bytes, ext: str) -> str:
        n[0] += 1
        files_dir.mkdir(parents=True, exist_ok=True)
        (files_dir / f'figure-{n[0]}.{ext}').write_bytes(raw)
        return f'{files_dir.name}/figure-{n[0]}.{ext}'
    title = fm.get('title', stem)
    out = [f"---\ntitle: {json.dumps(plain_title(title))}\n---", f"# {title}"]
    if fm.get('description'): out.append(f'<div class="description" markdown="1">\n\n{fm["description"]}\n\n</div>')
    for i, cell in enumerate(nb['cells']):
        src = ''.join(cell['source'])
        if cell['cell_type'] == 'markdown': out.append(math_to_mathml(src))
        elif cell['cell_type'] == 'code': out.append(render_code_cell(cell, image))
        elif i > 0 or not fm: out.append(src)  # raw cells other than the frontmatter pass through
    return rewrite_links('\n\n'.join(s for s in out if s.strip()) + '\n', pages, doc_url)


def sidebar_nav(quarto_yml: Path, titles: dict) -> list:
    "MkDocs `nav` from the `_quarto.yml` sidebar: its sections and page order, pages titled from their frontmatter."
    def walk(items):
        nav = []
        for it in items:
            if isinstance(it, str): nav.append({titles[it][1]: titles[it][0]} if it in titles else it)
            elif isinstance(it, dict) and 'section' in it: nav.append({it['section']: walk(it.get('contents', []))})
        return nav
    return walk(yaml.safe_load(quarto_yml.read_text())['website']['sidebar']['contents'])


def mkdocs_config(cfg: dict, nav: list) -> str:
    "The generated mkdocs.yml (Material theme, offline search, Pandoc heading ids)."
    conf = {
        'site_name': cfg.get('title', 'docs'), 'site_description': cfg.get('description', ''),
        'docs_dir': 'docs', 'site_dir': str(SITE), 'use_directory_urls': False, 'nav': nav,
        'theme': {'name': 'material', 'font': False, 'palette': {'primary': 'indigo'},
                  'features': ['navigation.sections', 'navigation.top', 'search.highlight', 'content.code.copy', 'toc.follow']},
        'plugins': ['search'], 'extra_css': ['styles.css', 'assets/docsite.css'],
        'validation': {'links': {'anchors': 'warn', 'unrecognized_links': 'warn', 'absolute_links': 'ignore'}},
        'markdown_extensions': ['tables', 'attr_list', 'md_in_html', 'admonition', 'pymdownx.superfences',
                                {'pymdownx.highlight': {'use_pygments': True}},
                                {'toc': {'permalink': True, 'slugify': 'SLUGIFY'}}],
    }
    return yaml.safe_dump(conf, sort_keys=False, allow_unicode=True).replace('slugify: SLUGIFY', 'slugify: !!python/name:docsite.pandoc_slug')


def proc_is_fresh() -> bool:
    "True when `_proc/` holds every notebook, each newer than its source, the modules and `_quarto.yml`."
    srcs = sorted((ROOT / 'nbs').glob('*.ipynb'))
    newest = max(p.stat().st_mtime for p in [*(ROOT / 'finetune_notebooks').glob('*.py'), ROOT / '_quarto.yml'])
    return all((PROC / s.name).exists() and (PROC / s.name).stat().st_mtime >= max(s.stat().st_mtime, newest) for s in srcs)


def write_sources(cfg: dict) -> int:
    "Markdown pages, figures, assets and mkdocs.yml into `_site_src/`; returns the page count."
    shutil.rmtree(BUILD, ignore_errors=True)
    docs = BUILD / 'docs'
    (docs / 'assets').mkdir(parents=True)
    nbs = sorted(PROC.glob('*.ipynb'))
    if not nbs: raise SystemExit(f"docsite: no notebooks in {PROC}; run `python tools/docs.py` first")
    books = {p: json.loads(p.read_text()) for p in nbs}
    stems = {p: page_stem(p, frontmatter(nb)) for p, nb in books.items()}
    pages = {p.name: f'{stems[p]}.md' for p in nbs} | {f'{stems[p]}.html': f'{stems[p]}.md' for p in nbs}
    doc_url = (cfg.get('doc_host', '') + cfg.get('doc_baseurl', '')).rstrip('/')
    for p, nb in books.items():
        (docs / f'{stems[p]}.md').write_text(notebook_page(nb, stems[p], docs / f'{stems[p]}_files', pages, doc_url))
    for f in ASSETS.iterdir(): shutil.copy(f, docs / 'assets' / f.name)
    if (ROOT / 'nbs' / 'styles.css').exists(): shutil.copy(ROOT / 'nbs' / 'styles.css', docs / 'styles.css')
    titles = {p.name: (f'{stems[p]}.md', plain_title(frontmatter(nb).get('title', stems[p]))) for p, nb in books.items()}
    (BUILD / 'mkdocs.yml').write_text(mkdocs_config(cfg, sidebar_nav(ROOT / '_quarto.yml', titles)))
    return len(nbs)


def render(quiet: bool = True) -> list:
    "Run MkDocs on `_site_src/mkdocs.yml` into `_site/`; returns MkDocs' warnings."
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # for the slugify named in mkdocs.yml
    warnings = []
    class Collect(logging.Handler):
        def emit(self, r): warnings.append(r.getMessage()) if r.levelno >= logging.WARNING else None
    log = logging.getLogger('mkdocs')
    handler = Collect(); log.addHandler(handler); log.setLevel(logging.INFO)
    try: build(load_config(str(BUILD / 'mkdocs.yml')))
    finally: log.removeHandler(handler)
    return warnings


def settings() -> dict:
    "Site title, description and doc URL from settings.ini (read directly; nbdev is not needed here)."
    from configparser import ConfigParser
    cp = ConfigParser(delimiters=['=']); cp.read(ROOT / 'settings.ini', encoding='utf-8')
    d = dict(cp['DEFAULT'])
    d.setdefault('doc_host', f"https://{d.get('user', '')}.github.io")
    d.setdefault('doc_baseurl', f"/{d.get('repo', '')}")
    return d


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--reuse-proc', action='store_true', help='skip tools/docs.py when _proc/ is newer than nbs/ and the modules')
    args, t0 = ap.parse_args(argv), time.perf_counter()
    if not (args.reuse_proc and proc_is_fresh()):
        r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'docs.py')], cwd=ROOT, capture_output=True, text=True)
        if r.returncode: raise SystemExit(f"docsite: tools/docs.py failed:\n{r.stderr[-3000:]}")
    t1 = time.perf_counter()
    n = write_sources(settings())
    warnings = render()
    for w in warnings: print('docsite: mkdocs warning:', w)
    t2 = time.perf_counter()
    print(f"docsite: {n} pages in {SITE.relative_to(ROOT)}/ in {t2 - t0:.1f} s "
          f"(processing {t1 - t0:.1f} s, rendering {t2 - t1:.1f} s); {len(warnings)} mkdocs warnings")


if __name__ == '__main__': main()
