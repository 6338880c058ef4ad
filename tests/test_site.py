"""The docs site built by tools/docsite.py, checked in a real browser (headless Debian chromium via Playwright).

Every page of the `_quarto.yml` sidebar is loaded once; each check is its own test, parametrized by notebook, so a
failure names the page and the problem: `test_no_progress_bars[10_gpt2_jokes]`. The converter's rules (Quarto cell
options, links, ANSI, `\\r`) are tested without a browser first. Screenshots go to artifacts/screenshots/.
"""
import base64, functools, http.server, json, re, shutil, socket, subprocess, sys, threading, urllib.error, urllib.parse, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
import docs, docsite

CHROMIUM = Path('/usr/bin/chromium')
INSTALL = 'apt-get update && apt-get install -y chromium chromium-driver'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']
SHOTS = ROOT / 'artifacts' / 'screenshots'
PAGES = [Path(n).stem for n in docs.sidebar_entries(ROOT / '_quarto.yml')]  # test ids: notebook names
DIRECTIVE = re.compile(r'^\s*#\|\s*[\w-]+', re.M)
PROGRESS = re.compile(r'\d+%\|')
LOG_DICT = re.compile(r"\{'(?:loss|eval_loss|train_runtime)':")
TRACEBACK = 'Traceback (most recent call last)'


# ---- the converter, without a browser ----

def cell(src, outputs=()): return {'cell_type': 'code', 'source': src, 'outputs': list(outputs), 'metadata': {}}
def stream(text, name='stdout'): return {'output_type': 'stream', 'name': name, 'text': text}
def no_images(raw, ext): raise AssertionError('no image expected')


def test_cell_options_are_read_and_every_option_line_stripped():
    opts, code = docsite.cell_options("#| echo: false\n#| output: asis\nx = 1\n#| stray: yes\ny = 2")
    assert opts == {'echo': False, 'output': 'asis'} and code == 'x = 1\ny = 2'


def test_include_false_echo_false_output_false():
    out = [stream('printed\n')]
    assert docsite.render_code_cell(cell('#| include: false\nx = 1', out), no_images) == ''
    shown = docsite.render_code_cell(cell('#| echo: false\nsecret_code()', out), no_images)
    assert 'secret_code' not in shown and 'printed' in shown
    quiet = docsite.render_code_cell(cell('#| output: false\nvisible_code()', out), no_images)
    assert 'visible_code()' in quiet and 'printed' not in quiet and '#|' not in quiet


def test_code_fold_and_asis_markdown():
    folded = docsite.render_code_cell(cell('#| code-fold: true\n#| code-summary: Show it\nf()'), no_images)
    assert folded.startswith('<details class="code-fold"') and '<summary>Show it</summary>' in folded and 'f()' in folded
    md = {'output_type': 'execute_result', 'data': {'text/markdown': '### f\n\n*doc*', 'text/plain': 'f'}}
    assert docsite.render_code_cell(cell('#| echo: false\n#| output: asis\nshow_doc(f)', [md]), no_images) == '### f\n\n*doc*'


def test_outputs_strip_ansi_apply_carriage_returns_and_extract_images(tmp_path):
    txt = docsite.render_code_cell(cell('run()', [stream('\x1b[31mred\x1b[0m\n'), stream(' 10%|#\r100%|##########|\n', 'stdout')]), no_images)
    bars = docsite.output_text(' 10%|#  | 1/99\x1b[A\r\r100%|###| 99/99\n')
    assert bars == '100%|###| 99/99\n'  # tqdm's cursor-up code leaves nothing behind
    assert 'red' in txt and '\x1b' not in txt and ' 10%' not in txt and '100%|##########|' in txt  # one merged stream
    png = base64.b64encode(b'\x89PNG fake').decode()
    saved = []
    img = docsite.render_code_cell(cell('plot()', [{'output_type': 'display_data', 'data': {'image/png': png, 'text/plain': '<Figure>'}}]),
                                   lambda raw, ext: saved.append((raw, ext)) or 'p_files/figure-1.png')
    assert saved == [(b'\x89PNG fake', 'png')] and '<img src="p_files/figure-1.png" alt="&lt;Figure&gt;">' in img
    table = docsite.render_code_cell(cell('df', [{'output_type': 'execute_result', 'data': {'text/html': '<table><tr><td>1</td></tr></table>', 'text/plain': 'x'}}]), no_images)
    assert '<table>' in table and '<pre>' not in table


def test_links_between_notebooks_and_to_the_published_site_become_page_links():
    pages = {'10_gpt2_jokes.ipynb': 'gpt2_jokes.md', 'core.html': 'core.md'}
    url = 'https://u.github.io/r'
    md = '[a](10_gpt2_jokes.ipynb) [b](nbs/10_gpt2_jokes.ipynb#x) [c](https://u.github.io/r/core.html#run_mode) [d](https://github.com/u/r/blob/main/nbs/10_gpt2_jokes.ipynb)'
    assert docsite.rewrite_links(md, pages, url) == ('[a](gpt2_jokes.md) [b](gpt2_jokes.md#x) [c](core.md#run_mode) '
                                                     '[d](https://github.com/u/r/blob/main/nbs/10_gpt2_jokes.ipynb)')
    code = '```python\nx = 1  # [`a`](10_gpt2_jokes.ipynb)\n```\nand `[b](10_gpt2_jokes.ipynb)`'
    assert docsite.rewrite_links(code, pages, url) == code  # code shows what was written
    assert 'assets/colab-badge.svg' in docsite.rewrite_links('![](https://colab.research.google.com/assets/colab-badge.svg)', pages, url)


def test_heading_ids_are_pandocs_and_math_becomes_mathml():
    assert [docsite.pandoc_slug(s) for s in ('JokesConfig.offline', 'run_mode', 'Where are we running?', '2. Pack')] == \
           ['jokesconfig.offline', 'run_mode', 'where-are-we-running', 'pack']
    out = docsite.math_to_mathml('a $W$ and `$x$` cost $5 and $6')
    assert '<math' in out and '`$x$`' in out and '$5 and $6' in out
    import markdown
    html = markdown.markdown(docsite.math_to_mathml('instead of\n$d^2$. You will:'), extensions=['md_in_html'])
    assert html.startswith('<p>instead of\n<span class="math"><math') and html.endswith('. You will:</p>')  # one paragraph


def hidden_lines() -> dict:
    "Distinctive lines of every `#| hide` cell in nbs/ (in no other cell of any notebook), by notebook."
    hidden, shown = {}, set()
    for nb_path in sorted((ROOT / 'nbs').glob('*.ipynb')):
        for c in json.loads(nb_path.read_text())['cells']:
            src = ''.join(c['source'])
            lines = {l.strip() for l in src.splitlines()}
            if c['cell_type'] == 'code' and re.search(r'^#\|\s*hide\s*$', src, re.M): hidden.setdefault(nb_path.stem, set()).update(lines)
            else: shown |= lines
    trivial = lambda l: len(l) < 20 or l.startswith(('#', 'import ', 'from '))
    shown_blob = '\n'.join(' '.join(l.split()) for l in shown) # a hidden line inside a shown one (`x = f()  # why`) is not distinctive
    return {nb: sorted(l for l in ls if not trivial(l) and ' '.join(l.split()) not in shown_blob) for nb, ls in hidden.items()}


def test_hidden_cells_give_distinctive_lines_to_look_for():
    found = hidden_lines()
    n_hide = sum(len(re.findall(r'#\|\s*hide\\n', p.read_text())) for p in (ROOT / 'nbs').glob('*.ipynb'))
    assert n_hide == 0 or sum(map(len, found.values())) > 0, 'the #| hide cells exist but no line of theirs is distinctive'


# ---- the site, in a browser ----

class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass


def serve(folder: Path):
    "An HTTP server for `folder` on 127.0.0.1 at a free port, in a thread; returns (server, base URL)."
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f'http://127.0.0.1:{srv.server_address[1]}/'


PAGE_JS = """() => {
  const content = document.querySelector('.md-content') || document.body;
  const visible = el => !!el && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  const side = document.querySelector('.md-sidebar--primary nav.md-nav--primary');
  const h1 = (content.querySelector('h1') || document.createElement('h1')).cloneNode(true);
  h1.querySelectorAll('.headerlink').forEach(a => a.remove());  // the permalink mark
  return {
    title: document.title, h1: h1 ? h1.innerText : '',
    sidebar_links: side ? Array.from(side.querySelectorAll('a.md-nav__link[href]')).map(a => a.href) : [],
    sidebar_visible: visible(side), search_visible: visible(document.querySelector('input.md-search__input')),
    images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0})),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    text: content.innerText,
    code: Array.from(content.querySelectorAll('pre')).map(p => p.textContent),
    outputs: Array.from(content.querySelectorAll('.cell-output')).map(o => o.textContent),
  };
}"""


def visit(page, url: str) -> dict:
    "Load `url` and collect what the checks need: status, console errors, title, sidebar, search, images, links, text."
    errors = []
    on_console = lambda m: errors.append(f'console {m.type}: {m.text}') if m.type == 'error' else None
    on_error = lambda e: errors.append(f'page error: {e}')
    on_fail = lambda r: errors.append(f'request failed: {r.url} ({r.failure})')
    page.on('console', on_console); page.on('pageerror', on_error); page.on('requestfailed', on_fail)
    try:
        resp = page.goto(url, wait_until='load')
        page.wait_for_load_state('networkidle')
        data = page.evaluate(PAGE_JS)
    finally:
        page.remove_listener('console', on_console); page.remove_listener('pageerror', on_error); page.remove_listener('requestfailed', on_fail)
    return {**data, 'status': resp.status if resp else None, 'errors': errors}


def page_urls() -> dict:
    "The built page of each sidebar notebook: `10_gpt2_jokes` -> `gpt2_jokes.html`."
    return {nb: docsite.page_stem(Path(nb), docsite.frontmatter(json.loads((docsite.PROC / f'{nb}.ipynb').read_text()))) + '.html'
            for nb in PAGES}


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "Build the site, serve it, visit every page in chromium, screenshot two; the collected data by notebook."
    if not CHROMIUM.exists(): pytest.skip(f'chromium is not installed: {INSTALL}')
    try: from playwright.sync_api import sync_playwright  # Debian's chromium is used: never `playwright install`
    except ImportError: pytest.fail('playwright is not installed: pip install playwright (the dev extra)')
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'docsite.py'), '--reuse-proc'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f'tools/docsite.py failed:\n{r.stdout[-2000:]}{r.stderr[-3000:]}'
    urls, (srv, base) = page_urls(), serve(docsite.SITE)
    shutil.rmtree(SHOTS, ignore_errors=True); SHOTS.mkdir(parents=True)
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(str(tmp_path_factory.mktemp('chromium-profile')), executable_path=str(CHROMIUM),
                                                       headless=True, args=FLAGS, viewport={'width': 1400, 'height': 900})
            try:
                page = ctx.new_page()
                data = {nb: visit(page, base + u) for nb, u in urls.items()}
                page.goto(base + 'index.html'); page.screenshot(path=str(SHOTS / 'home.png'), full_page=True)
                page.goto(base + urls['10_gpt2_jokes']); page.screenshot(path=str(SHOTS / '10_gpt2_jokes.png'), full_page=True)
                data['_search'] = search_results(page, base + 'index.html', 'LoRA')
            finally: ctx.close()
        data['_base'], data['_urls'], data['_targets'] = base, urls, fetch_targets(data, base)
        yield data
    finally: srv.shutdown(); srv.server_close()


def search_results(page, url: str, query: str) -> list:
    "The result links the search box lists for `query` (Material's lunr search, offline)."
    page.goto(url); page.wait_for_load_state('networkidle')
    page.click('input.md-search__input')
    page.keyboard.type(query, delay=30)  # Material searches on key events; fill() sends none
    page.wait_for_selector('.md-search-result__item', timeout=15000)
    return page.eval_on_selector_all('.md-search-result__item a[href]', 'els => els.map(a => a.href)')


def fetch_targets(data: dict, base: str) -> dict:
    "Status and element ids of every internal link target (without its #fragment) of every page."
    targets = {u.split('#')[0] for nb in PAGES for u in data[nb]['links'] if u.startswith(base)}
    out = {}
    for t in sorted(targets):
        try:
            with urllib.request.urlopen(t, timeout=10) as resp: body, status = resp.read().decode('utf-8', 'replace'), resp.status
        except urllib.error.HTTPError as e: body, status = '', e.code
        out[t] = (status, set(re.findall(r'\sid="([^"]+)"', body)))
    return out


def page_data(site, nb):
    if nb not in site: pytest.fail(f'{nb}: no page was visited')
    return site[nb]


@pytest.mark.parametrize('nb', PAGES)
def test_loads(site, nb):
    d = page_data(site, nb)
    assert d['status'] == 200, f"{nb}: {site['_urls'][nb]} answered {d['status']}"
    assert not d['errors'], f"{nb}: " + '; '.join(d['errors'][:5])


@pytest.mark.parametrize('nb', PAGES)
def test_has_title(site, nb):
    d = page_data(site, nb)
    assert d['h1'].strip() and d['h1'].strip() in d['title'], f"{nb}: H1 {d['h1']!r}, <title> {d['title']!r}"


@pytest.mark.parametrize('nb', PAGES)
def test_sidebar_and_search_box(site, nb):
    d, pages = page_data(site, nb), {site['_base'] + u for u in site['_urls'].values()}
    assert d['sidebar_visible'], f'{nb}: the sidebar is not shown'
    missing = pages - {u.split('#')[0] for u in d['sidebar_links']}
    assert not missing, f'{nb}: the sidebar lacks ' + ', '.join(sorted(missing))
    assert d['search_visible'], f'{nb}: the search box is not shown'


def test_sidebar_follows_quarto_sections(site):
    nav = docsite.sidebar_nav(ROOT / '_quarto.yml', {f'{nb}.ipynb': (u.replace('.html', '.md'), nb) for nb, u in site['_urls'].items()})
    assert [list(s)[0] for s in nav][:3] == ['Start', 'Methods', 'Helpers']
    order = [site['_base'] + site['_urls'][nb] for nb in PAGES]
    shown = [u for u in dict.fromkeys(l.split('#')[0] for l in site['index']['sidebar_links']) if u in order]
    assert shown == order, 'the sidebar order differs from _quarto.yml'


def test_search_works_offline(site):
    assert any('lora.html' in u for u in site['_search']), f"searching 'LoRA' listed {site['_search'][:5]}"


@pytest.mark.parametrize('nb', PAGES)
def test_images_load(site, nb):
    bad = [i['src'] for i in page_data(site, nb)['images'] if not i['ok']]
    assert not bad, f'{nb}: {len(bad)} image(s) did not load: ' + ', '.join(bad[:5])


@pytest.mark.parametrize('nb', PAGES)
def test_internal_links_resolve(site, nb):
    base, problems = site['_base'], []
    for u in dict.fromkeys(page_data(site, nb)['links']):
        if not u.startswith(base): continue
        target, _, frag = u.partition('#')
        status, ids = site['_targets'][target]
        if status != 200: problems.append(f'{u[len(base):]} -> HTTP {status}')
        elif frag and urllib.parse.unquote(frag) not in ids: problems.append(f'{u[len(base):]}: no #{urllib.parse.unquote(frag)} there')
    assert not problems, f'{nb}: {len(problems)} broken link(s): ' + '; '.join(problems[:8])


def shown_text(d) -> str:
    "All the page shows: its visible text and every code block (also folded ones)."
    return d['text'] + '\n' + '\n'.join(d['code'])


def output_text(d) -> str:
    "The saved cell outputs the page shows (prose and code may quote a log line on purpose)."
    return '\n'.join(d['outputs'])


def matches(pattern, text, n=3) -> list:
    return [text[max(0, m.start() - 30):m.end() + 40].replace('\n', ' ') for m in pattern.finditer(text)][:n]


@pytest.mark.parametrize('nb', PAGES)
def test_no_directive_lines(site, nb):
    found = matches(DIRECTIVE, shown_text(page_data(site, nb)))
    assert not found, f'{nb}: raw #| directive text shown: {found}'


@pytest.mark.parametrize('nb', PAGES)
def test_no_progress_bars(site, nb):
    text = output_text(page_data(site, nb))
    assert not PROGRESS.search(text), f'{nb}: {len(PROGRESS.findall(text))} progress-bar text(s), e.g. {matches(PROGRESS, text, 2)}'


@pytest.mark.parametrize('nb', PAGES)
def test_no_training_log_dicts(site, nb):
    text = output_text(page_data(site, nb))
    assert not LOG_DICT.search(text), f'{nb}: {len(LOG_DICT.findall(text))} Trainer log dict(s), e.g. {matches(LOG_DICT, text, 2)}'


@pytest.mark.parametrize('nb', PAGES)
def test_no_tracebacks(site, nb):
    text = output_text(page_data(site, nb))
    assert TRACEBACK not in text, f'{nb}: a Python traceback is shown: {matches(re.compile(re.escape(TRACEBACK)), text, 1)}'


@pytest.mark.parametrize('nb', PAGES)
def test_no_hidden_cell_shown(site, nb):
    text = ' '.join(shown_text(page_data(site, nb)).split())
    leaked = [f'{src}: {l}' for src, ls in hidden_lines().items() for l in ls if ' '.join(l.split()) in text]
    assert not leaked, f'{nb}: lines of #| hide cells are shown: {leaked[:3]}'


def test_screenshots_saved(site):
    for name in ('home.png', '10_gpt2_jokes.png'):
        assert (SHOTS / name).stat().st_size > 10_000, f'{SHOTS / name} is missing or blank'


def test_saved_outputs_are_shown(site):
    d = site['10_gpt2_jokes']
    assert len(d['outputs']) >= 5 and len(d['images']) >= 2, f"10_gpt2_jokes shows {len(d['outputs'])} outputs, {len(d['images'])} images"
    assert any('held-out perplexity' in o for o in d['outputs'])
