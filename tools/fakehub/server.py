"""The loopback Hub process: olah in offline mode over the built git mirrors, with `HubFixes` in front.

Run by `tools.fakehub.serve()` as `python server.py --hub DIR --log-dir DIR`: it binds 127.0.0.1 on a free port,
prints `FAKEHUB_PORT <n>` on stdout, sends everything else to `<log-dir>/server.log`, and exits when its parent dies.
Only olah, starlette and uvicorn are imported (no relative imports), so the file runs as a script.
"""
from __future__ import annotations
import argparse, os, re, socket, sys, threading, time
from pathlib import Path

ALIASES = {'gpt2': 'openai-community/gpt2', 'bert-base-uncased': 'google-bert/bert-base-uncased'} # legacy model ids the Hub redirects
_KINDS = {'models': 'models', 'datasets': 'datasets', 'spaces': 'spaces'}
_API_INFO = re.compile(r'^/api/(models|datasets)/([^/]+)/([^/]+)/?$') # repo info without a revision

def repo_of(path:str) -> tuple|None:
    "(kind, 'org/name') of the repository a Hub URL path is about, or None (e.g. '/api/whoami-v2')."
    parts = path.strip('/').split('/')
    if len(parts) >= 4 and parts[0] == 'api' and parts[1] in _KINDS: return parts[1], '/'.join(parts[2:4])
    if len(parts) >= 4 and parts[0] in ('datasets', 'spaces') and parts[3] == 'resolve': return parts[0], '/'.join(parts[1:3])
    if len(parts) >= 3 and parts[2] == 'resolve': return 'models', '/'.join(parts[0:2])
    return None

def resolve_file(path:str) -> str|None:
    "The file a `.../resolve/<revision>/<file>` path asks for, or None for other paths."
    parts = path.strip('/').split('/')
    i = parts.index('resolve') if 'resolve' in parts[1:4] else -1
    return '/'.join(parts[i + 2:]) if i > 0 and len(parts) > i + 2 else None

def rewrite(path:str) -> str:
    "The path olah should see: legacy one-part model ids made canonical, and repo info asked at revision main."
    parts = path.split('/')
    if len(parts) > 3 and parts[1] == 'api' and parts[2] == 'models' and parts[3] in ALIASES: parts[3:4] = ALIASES[parts[3]].split('/')
    elif len(parts) > 2 and parts[2] == 'resolve' and parts[1] in ALIASES: parts[1:2] = ALIASES[parts[1]].split('/')
    path = '/'.join(parts)
    return path.rstrip('/') + '/revision/main' if _API_INFO.match(path) else path

class HubFixes:
    "ASGI middleware: what olah's offline mode answers differently from the Hub, plus static files under /files/."
    def __init__(self, app, hub:Path, files_url:str): self.app, self.mirrors, self.files, self.files_url = app, hub / 'mirrors', hub / 'files', files_url

    def exists(self, repo) -> bool: return repo is not None and (self.mirrors / repo[0] / repo[1]).is_dir()

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http': return await self.app(scope, receive, send)
        if scope['path'].startswith('/files/'): return await self.static(scope, receive, send)
        if scope['path'] == '/fakehub/info': return await self.info(scope, receive, send)
        path = rewrite(scope['path'])
        scope = dict(scope, path=path, raw_path=path.encode())
        repo = repo_of(path)
        if not self.exists(repo): return await self.app(scope, receive, send) # no such repo: olah's 401 RepoNotFound is the Hub's answer
        file = resolve_file(path)
        if file is not None and not (self.mirrors / repo[0] / repo[1] / file).is_file(): # olah's GET crashes (500) on a missing file
            return await self.entry_not_found(scope, receive, send) # one commit per repo: the working tree is every revision's tree
        async def send_entry_not_found(msg): # olah says RepoNotFound for a missing file or folder of an existing repo; the Hub says 404 EntryNotFound
            if msg['type'] == 'http.response.start' and msg['status'] == 401:
                headers = [(k, v) for k, v in msg['headers'] if k.lower() not in (b'x-error-code', b'x-error-message')]
                msg = dict(msg, status=404, headers=headers + [(b'x-error-code', b'EntryNotFound'), (b'x-error-message', b'Entry not found')])
            await send(msg)
        return await self.app(scope, receive, send_entry_not_found)

    async def entry_not_found(self, scope, receive, send):
        "The Hub's answer for a missing file of an existing repo: 404 with `X-Error-Code: EntryNotFound`."
        from starlette.responses import JSONResponse
        await JSONResponse({'error': 'Entry not found'}, 404, headers={'x-error-code': 'EntryNotFound', 'x-error-message': 'Entry not found'})(scope, receive, send)

    async def info(self, scope, receive, send):
        "Where the static files are (another port: datasets reads any URL under HF_ENDPOINT as a Hub repo path)."
        from starlette.responses import JSONResponse
        await JSONResponse({'files_url': self.files_url, 'files': sorted(p.name for p in self.files.iterdir())})(scope, receive, send)

    async def static(self, scope, receive, send):
        "A file of `<hub>/files` (e.g. the jokes CSV, mirrored from GitHub), with HEAD and Range support."
        from starlette.responses import FileResponse, PlainTextResponse
        name = scope['path'][len('/files/'):]
        path = self.files / name
        ok = '/' not in name and name not in ('', '.', '..') and path.is_file()
        resp = FileResponse(path, media_type='text/csv' if name.endswith('.csv') else None) if ok else PlainTextResponse('Not found', 404)
        await resp(scope, receive, send)

def make_app(hub:Path, log_dir:Path, port:int, files_port:int):
    "olah's app configured offline over `<hub>/mirrors`, logging to `log_dir`, wrapped in `HubFixes`."
    from olah import server as olah_server
    from olah.configs import OlahConfig
    from olah.utils.logging import build_logger
    cfg = OlahConfig()
    cfg.host, cfg.port, cfg.offline = '127.0.0.1', port, True
    cfg.mirrors_path, cfg.repos_path = [str(hub / 'mirrors')], str(log_dir / 'repos')
    cfg.mirror_netloc = cfg.mirror_lfs_netloc = f'127.0.0.1:{port}'
    olah_server.logger = build_logger('olah', 'olah.log', logger_dir=str(log_dir))
    olah_server.app.state.logger = olah_server.logger
    olah_server.app.state.app_settings = olah_server.AppSettings(config=cfg)
    return HubFixes(olah_server.app, hub, f'http://127.0.0.1:{files_port}/files')

def _exit_with_parent(parent:int):
    "Exit at once when the process that started the server is gone (so a killed test leaves no server behind)."
    while os.getppid() == parent: time.sleep(0.5)
    os._exit(0)

def _bind(port:int) -> socket.socket: # 0 = a free port
    "A TCP socket bound to 127.0.0.1:`port`."
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('127.0.0.1', port))
    return sock

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--hub', required=True, help='a built hub folder (tools.fakehub.build())')
    p.add_argument('--log-dir', required=True, help='where server.log and olah.log go')
    p.add_argument('--port', type=int, default=0, help='0 = a free port')
    a = p.parse_args(argv)
    log_dir = Path(a.log_dir); log_dir.mkdir(parents=True, exist_ok=True)
    socks = [_bind(a.port), _bind(0)] # the Hub, and the static files on a port of their own
    port, files_port = (s.getsockname()[1] for s in socks)
    print(f'FAKEHUB_PORT {port} {files_port}', flush=True)
    log = os.open(log_dir / 'server.log', os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1); os.dup2(log, 2) # nobody reads our stdout after the port line: a full pipe would block the server
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    import uvicorn
    app = make_app(Path(a.hub), log_dir, port, files_port)
    uvicorn.Server(uvicorn.Config(app, log_level='warning', access_log=False, lifespan='on')).run(sockets=socks)

if __name__ == '__main__': main()
