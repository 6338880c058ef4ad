"Shared fixtures: one smoke run per method, made once per test session and used by every test file that needs it."
import importlib
import pytest

SMOKE_METHODS = {  # method -> (module, its config class)
    'jokes': ('finetune_notebooks.jokes', 'JokesConfig'),
    'chat': ('finetune_notebooks.chat', 'Config'),
    'classify': ('finetune_notebooks.classify', 'ClassifyConfig'),
    'lora': ('finetune_notebooks.lora', 'LoraRunConfig'),
    'instruct': ('finetune_notebooks.instruct', 'InstructConfig'),
    'loop': ('finetune_notebooks.loop', 'LoopConfig'),
}


def method_parts(method):
    "(module, config class) of `method`."
    name, cls = SMOKE_METHODS[method]
    module = importlib.import_module(name)
    return module, getattr(module, cls)


@pytest.fixture(scope='session')
def smoke_runs(tmp_path_factory):
    "`smoke_runs(method)` -> (out_dir, metrics) of `run(Config.smoke(), out_dir)`; each method runs once per session."
    done = {}
    def get(method):
        if method not in done:
            module, cls = method_parts(method)
            out = tmp_path_factory.mktemp(method) / 'out'
            done[method] = out, module.run(cls.smoke(), out)
        return done[method]
    return get


@pytest.fixture
def smoke_run(request, smoke_runs):
    "The smoke run of the method named by an indirect parametrization, else by the test module's `METHOD`."
    return smoke_runs(getattr(request, 'param', None) or request.module.METHOD)
