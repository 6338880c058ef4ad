"""`python -m tools.fakehub serve|build|env`: run the loopback Hub in the foreground, or just build it.

    python -m tools.fakehub serve          # prints `export HF_ENDPOINT=...` lines; Ctrl-C stops it
    python -m tools.fakehub build          # builds (or finds) the repositories; prints their folder
"""
import argparse, os, sys, tempfile, time

from . import build, hub_env, serve

def _exports(env:dict) -> str:
    "Shell lines setting (or unsetting, for None) each variable."
    return '\n'.join(f'unset {k}' if v is None else f'export {k}={v}' for k, v in env.items())

def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m tools.fakehub', description='A Hugging Face Hub on loopback with tiny models and data sets.')
    p.add_argument('command', choices=['serve', 'build'])
    p.add_argument('--root', help='folder of built hubs (default: $FTNB_FAKEHUB_CACHE or ~/.cache/finetune_notebooks/fakehub)')
    p.add_argument('--hf-home', help='HF_HOME for the clients (default: a new temporary folder)')
    a = p.parse_args(argv)
    if a.command == 'build': print(build(a.root)); return 0
    hf_home = a.hf_home or tempfile.mkdtemp(prefix='fakehub-hf-home-')
    with serve(a.root, log_dir=os.path.join(hf_home, 'fakehub-logs')) as endpoint:
        print(f'# loopback Hub at {endpoint} (logs in {hf_home}/fakehub-logs); in another shell:', flush=True)
        print(_exports(hub_env(endpoint, hf_home)), flush=True)
        try:
            while True: time.sleep(3600)
        except KeyboardInterrupt: pass
    return 0

if __name__ == '__main__': sys.exit(main())
