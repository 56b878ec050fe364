"""The replaced system's model layer, with its names and signatures, on
Orchestra: a program that used it changes one import line.

    from orchestra.compat import get_orchestra, GenerationParams
    o = get_orchestra()
    text = o.reason("Why is the sky blue?")
    code = o.code("def fib(n):", GenerationParams(max_tokens=128))
    vec = o.embed_text("a sentence")

Settings come from the same DREAMER_* variables:

    DREAMER_REASONING_MODEL   path of the reasoning model (required)
    DREAMER_CODER_MODEL       path of the coder model (else: the reasoning model)
    DREAMER_EMBEDDING_MODEL   path of the embedding model (else: the reasoning model)
    DREAMER_N_CTX             context tokens (default 4096)
    DREAMER_N_GPU_LAYERS      layers on the GPU (default -1: all, where there is one)
    DREAMER_N_THREADS         CPU threads (default 0: one per CPU)

(each *_MODEL also read as *_MODEL_PATH). As before, the coder and the
embedding model fall back to the reasoning model when their path is unset
or the file is missing; "dream" is the reasoning model sampled more freely.
What changes underneath: one model file is loaded once for every role that
uses it, concurrent calls share its decodes, calls take no Python lock, and
unload waits for the calls in flight instead of freeing a model in use.
"""

import contextlib
import dataclasses
import enum
import os
import threading
from typing import Dict, List, Optional

from . import Orchestra


class ModelRole(str, enum.Enum):
    REASONING = "reasoning"
    CODER = "coder"
    DREAM = "dream"
    EMBEDDING = "embedding"


@dataclasses.dataclass
class ModelConfig:
    path: str
    n_ctx: int = 4096
    n_gpu_layers: int = -1
    n_threads: int = 0
    embedding: bool = False


@dataclasses.dataclass
class GenerationParams:
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    repeat_penalty: float = 1.1
    stop: Optional[List[str]] = None

    def as_kwargs(self):
        kw = dataclasses.asdict(self)
        if not kw["stop"]:
            kw.pop("stop")
        return kw


# per-role sampling defaults, as the replaced system shipped them
ROLE_DEFAULTS = {
    ModelRole.REASONING: GenerationParams(temperature=0.7, top_p=0.9, repeat_penalty=1.1),
    ModelRole.CODER: GenerationParams(temperature=0.3, top_p=0.95, repeat_penalty=1.15),
    ModelRole.DREAM: GenerationParams(temperature=0.9, top_p=0.95, repeat_penalty=1.15),
    ModelRole.EMBEDDING: GenerationParams(),
}


def _env(name, default=None):
    v = os.environ.get(name)
    if v is None or v == "":
        v = os.environ.get(name + "_PATH") if name.endswith("_MODEL") else None
    return default if v is None or v == "" else v


def _env_int(name, default):
    v = _env(name)
    if v is None:
        return default
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"{name}={v!r} is not a whole number") from None


def configs_from_env() -> Dict[ModelRole, ModelConfig]:
    """The role -> ModelConfig map the DREAMER_* variables describe, with
    the fallbacks applied (a role whose file is unset or missing uses the
    reasoning model's)."""
    reasoning = _env("DREAMER_REASONING_MODEL")
    if not reasoning:
        raise ValueError("DREAMER_REASONING_MODEL is not set (the path of the reasoning model)")
    common = dict(n_ctx=_env_int("DREAMER_N_CTX", 4096),
                  n_gpu_layers=_env_int("DREAMER_N_GPU_LAYERS", -1),
                  n_threads=_env_int("DREAMER_N_THREADS", 0))
    out = {ModelRole.REASONING: ModelConfig(reasoning, **common)}
    for role, var in ((ModelRole.CODER, "DREAMER_CODER_MODEL"),
                      (ModelRole.EMBEDDING, "DREAMER_EMBEDDING_MODEL")):
        path = _env(var)
        if path and os.path.isfile(path):
            out[role] = ModelConfig(path, embedding=role is ModelRole.EMBEDDING, **common)
    return out


class ManagedModel:
    """One role's model: load() / unload() / is_loaded, managed() holding
    it loaded for a block, generate() and embed()."""

    def __init__(self, orchestra: "ModelOrchestra", role: ModelRole):
        self._o = orchestra
        self.role = ModelRole(role)

    def load(self):
        self._o._orch.preload(self.role.value)

    def unload(self):
        self._o._orch.unload(self.role.value)

    @property
    def is_loaded(self) -> bool:
        for s in self._o._orch.status():
            if s["role"] == self.role.value:
                return s["state"] == "ready"
        return False

    @contextlib.contextmanager
    def managed(self):
        """Loads for the block; the model stays warm after it (idle
        unloading and the memory budget decide when it goes)."""
        self.load()
        yield self

    def generate(self, prompt: str, params: Optional[GenerationParams] = None) -> str:
        p = params or ROLE_DEFAULTS[self.role]
        return self._o._orch.generate(self.role.value, prompt, **p.as_kwargs()).text

    def embed(self, text: str) -> List[float]:
        return self._o._orch.embed([text], role=self.role.value)[0]


class ModelOrchestra:
    """The roles: reason(), code(), dream(), embed_text(), preload(),
    unload_all(), status(). configs: role -> ModelConfig (default: from the
    DREAMER_* variables); a role without one uses the reasoning model."""

    def __init__(self, configs: Optional[Dict[ModelRole, ModelConfig]] = None,
                 memory_budget: Optional[str] = None):
        configs = dict(configs) if configs is not None else configs_from_env()
        configs = {ModelRole(k): v for k, v in configs.items()}
        if ModelRole.REASONING not in configs:
            raise ValueError("a reasoning model is required")
        sections = {}
        if memory_budget:
            sections["defaults"] = {"memory_budget": memory_budget}
        for role in ModelRole:
            cfg = configs.get(role)
            d = ROLE_DEFAULTS[role]
            sec = {"temperature": d.temperature, "top_p": d.top_p, "top_k": d.top_k,
                   "repeat_penalty": d.repeat_penalty, "max_tokens": d.max_tokens}
            if role is ModelRole.DREAM and cfg is None:
                sec["fallback"] = "reasoning"
            elif cfg is None or (role is not ModelRole.REASONING and not os.path.isfile(cfg.path)):
                sec["fallback"] = "reasoning"  # unset or missing: the reasoning model
            else:
                sec.update(path=cfg.path, n_ctx=cfg.n_ctx, n_gpu_layers=cfg.n_gpu_layers,
                           n_threads=cfg.n_threads)
            if role is ModelRole.EMBEDDING:
                sec["embedding"] = True
            sections[role.value] = sec
        self.configs = configs
        self._orch = Orchestra.from_dict(sections)
        self.models = {r: ManagedModel(self, r) for r in ModelRole}

    def _gen(self, role, prompt, params):
        p = params or ROLE_DEFAULTS[role]
        return self._orch.generate(role.value, prompt, **p.as_kwargs()).text

    def reason(self, prompt: str, params: Optional[GenerationParams] = None) -> str:
        return self._gen(ModelRole.REASONING, prompt, params)

    def code(self, prompt: str, params: Optional[GenerationParams] = None) -> str:
        return self._gen(ModelRole.CODER, prompt, params)

    def dream(self, prompt: str, params: Optional[GenerationParams] = None) -> str:
        return self._gen(ModelRole.DREAM, prompt, params)

    def embed_text(self, text: str) -> List[float]:
        return self._orch.embed([text], role=ModelRole.EMBEDDING.value)[0]

    def preload(self, *roles: ModelRole):
        self._orch.preload(*[ModelRole(r).value for r in (roles or [ModelRole.REASONING])])

    def unload_all(self):
        self._orch.unload_all()

    def status(self) -> Dict[str, dict]:
        """role -> {"loaded", "path", "model_role", "state", "bytes", ...}."""
        out = {}
        for s in self._orch.status():
            d = dict(s)
            d["loaded"] = s["state"] == "ready"
            out[s["role"]] = d
        return out

    def close(self):
        self._orch.close()


_lock = threading.Lock()
_instance: Optional[ModelOrchestra] = None


def get_orchestra() -> ModelOrchestra:
    """The process's ModelOrchestra, made on first call from DREAMER_*."""
    global _instance
    with _lock:
        if _instance is None:
            _instance = ModelOrchestra()
        return _instance


__all__ = ["ModelRole", "ModelConfig", "GenerationParams", "ManagedModel", "ModelOrchestra",
           "get_orchestra", "configs_from_env", "ROLE_DEFAULTS"]
