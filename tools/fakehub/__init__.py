"""A Hugging Face Hub on loopback for tests: the models and data sets full mode uses, tiny and built offline, served by olah.

```python
from tools.fakehub import serve, hub_env
with serve() as endpoint:                          # builds (or reuses) the repositories, starts the server on a free port
    env = {**os.environ, **hub_env(endpoint, hf_home)}   # HF_ENDPOINT, a fresh HF_HOME, FTNB_JOKES_URL, ...
    subprocess.run([...], env=env)                 # from_pretrained('openai-community/gpt2') etc. now work
# the server is stopped here
```
`python -m tools.fakehub serve` runs it in the foreground and prints the variables to export.
"""
from __future__ import annotations
import contextlib, json, os, subprocess, sys, tempfile, threading, time, urllib.error, urllib.request
from pathlib import Path

from .build import ALPACA, BERT, DATASETS, GPT2, IMDB, JOKES_FILE, MODELS, T5, ULTRACHAT, build, cache_root, content_hash

__all__ = ['serve', 'hub_env', 'build', 'wait_until_up', 'MODELS', 'DATASETS', 'GPT2', 'BERT', 'T5', 'ULTRACHAT', 'IMDB', 'ALPACA']

class FakeHubError(RuntimeError):
    "The loopback Hub did not start; the message names its log file."

class Endpoint(str):
    "The Hub's URL (a str), with `files_url`: where the static files (the jokes CSV) are served."
    files_url: str

def _endpoint(port:int, files_port:int) -> Endpoint:
    e = Endpoint(f'http://127.0.0.1:{port}'); e.files_url = f'http://127.0.0.1:{files_port}/files'
    if e.files_url.startswith(e): raise FakeHubError(f"files URL {e.files_url} starts with HF_ENDPOINT {e}: datasets would read it as a Hub path")
    return e

def _read_ports(proc, log:Path, timeout:float) -> tuple:
    "The ports the server process prints as `FAKEHUB_PORT <hub> <files>`, read within `timeout` seconds."
    box = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start(); reader.join(timeout)
    line = box[0].decode().strip() if box else ''
    if not line.startswith('FAKEHUB_PORT '):
        raise FakeHubError(f"the fake Hub server printed no port within {timeout:.0f} s (got {line!r}); see {log}")
    return tuple(int(p) for p in line.split()[1:3])

def wait_until_up(endpoint:str, timeout:float=60.0, proc=None, log:Path|None=None):
    "Poll `{endpoint}/api/models/openai-community/gpt2` until it answers 200; raise `FakeHubError` naming the log otherwise."
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None: raise FakeHubError(f"the fake Hub server exited with code {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f'{endpoint}/api/models/{GPT2}', timeout=5) as r:
                if r.status == 200: return
        except (urllib.error.URLError, OSError) as e: last = e
        time.sleep(0.1)
    raise FakeHubError(f"the fake Hub at {endpoint} did not answer within {timeout:.0f} s ({last}); see {log}")

def _stop(proc, timeout:float=10.0):
    "Stop the server process: SIGTERM, then SIGKILL if it is still there after `timeout` seconds."
    if proc.poll() is None:
        proc.terminate()
        try: proc.wait(timeout)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
    if proc.stdout: proc.stdout.close()

@contextlib.contextmanager
def serve(root:str|Path|None=None, # a folder of built hubs (default: `build.cache_root()`); built there if needed
          log_dir:str|Path|None=None, # where server.log/olah.log go (default: a temporary folder, removed on exit)
          timeout:float=60.0, # seconds to wait for the server to answer
         ):
    "Context manager: build (or reuse) the repositories, start the Hub on 127.0.0.1 on a free port, yield its URL, stop it on exit."
    hub = build(root)
    with contextlib.ExitStack() as stack:
        logs = Path(log_dir) if log_dir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix='fakehub-logs-')))
        logs.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(Path(__file__).with_name('server.py')), '--hub', str(hub), '--log-dir', str(logs)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            endpoint = _endpoint(*_read_ports(proc, logs / "server.log", timeout))
            wait_until_up(endpoint, timeout, proc, logs / 'server.log')
            yield endpoint
        finally: _stop(proc)

def files_url_of(endpoint:str) -> str:
    "Ask a running loopback Hub where its static files are served."
    with urllib.request.urlopen(f'{endpoint}/fakehub/info', timeout=10) as r: return json.load(r)['files_url']

def hub_env(endpoint:str, # the URL `serve()` yields
            hf_home:str|Path, # an empty folder for the Hub cache (HF_HOME), so nothing cached elsewhere is used
           ) -> dict:
    "Environment variables for a client of the loopback Hub (full mode); `None` values mean: remove from the environment."
    hf_home, files_url = str(hf_home), getattr(endpoint, 'files_url', None) or files_url_of(endpoint)
    return {'HF_ENDPOINT': endpoint, 'HF_HOME': hf_home, 'HF_HUB_CACHE': os.path.join(hf_home, 'hub'),
            'HF_DATASETS_CACHE': os.path.join(hf_home, 'datasets'), 'HF_HUB_OFFLINE': None, 'TRANSFORMERS_OFFLINE': None,
            'HF_DATASETS_OFFLINE': None, 'HF_TOKEN': None, 'HF_HUB_DISABLE_TELEMETRY': '1', 'HF_HUB_DISABLE_PROGRESS_BARS': '1',
            'HF_HUB_ETAG_TIMEOUT': '30', 'HF_HUB_DOWNLOAD_TIMEOUT': '60', 'HF_XET_HIGH_PERFORMANCE': None,
            'FTNB_JOKES_URL': f'{files_url}/{JOKES_FILE}', 'FTNB_SMOKE': None, 'IN_TEST': None}

def apply_env(env:dict, # a base environment, e.g. dict(os.environ)
              changes:dict, # `hub_env(...)`: None removes a variable
             ) -> dict:
    "`env` with `changes` applied (None removes the variable)."
    out = dict(env)
    for k, v in changes.items():
        if v is None: out.pop(k, None)
        else: out[k] = v
    return out
