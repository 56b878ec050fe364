"""The replaced program's model layer (CodeDreamer's codedreamer/models.py)
with its exact public API, on Orchestra: a program written against it
changes one import line.

    from orchestra.compat import get_orchestra, ModelRole
    o = get_orchestra()
    plan = o.reason("Plan the change.", temperature=0.5)
    code = o.code("def fib(n):", max_tokens=128)
    vec = o.embed_text("a sentence")
    o.preload([ModelRole.REASONING, ModelRole.CODER])
    o.status()          # {"reasoning": True, "coder": False, "embed": False}

Names, signatures, defaults and return types are the original's:
ModelRole (an Enum of REASONING, CODER, EMBEDDING), ModelConfig(path, role,
n_ctx=4096, n_gpu_layers=99, n_threads=4, embedding=False) with .name (the
file's stem), GenerationParams(max_tokens=1024, temperature=0.7, top_p=0.9,
repeat_penalty=1.1, stop=[]), the ModelInterface protocol, ManagedModel(config)
(load, unload, is_loaded, managed(), generate, embed), ModelOrchestra(
reasoning_path=None, coder_path=None, embed_path=None) (reason, code, dream,
embed_text, preload, unload_all, status, the reasoning/coder/embed properties
and _reasoning/_coder/_embed), get_orchestra() and settings.

Settings are read as the original's (pydantic-settings, prefix DREAMER_,
case-insensitive, from the environment and then from a .env file in the
working directory): DREAMER_MODEL_PATH (default
/models/qwen2.5-14b-instruct-q4_k_m.gguf), DREAMER_CODER_MODEL_PATH,
DREAMER_EMBED_MODEL_PATH (a value that does not end in .gguf is unset),
DREAMER_N_CTX (4096, at least 512), DREAMER_N_GPU_LAYERS (99, at least 0),
DREAMER_N_THREADS (4, at least 1). As in the original, the coder and the
embedding model are the reasoning model when their path is unset or the file
is missing; the coder gets 4,096 tokens of context, the embedding model 512
and no GPU layers.

Sampling is the original's: what GenerationParams says, and for the rest
llama-cpp-python's completion defaults (top_k 40, min_p 0.05); max_tokens 0
or less generates until the context is full.

Where the original failed only because of its own limits, this does better:
- the three roles are one Orchestra: a file two roles name is loaded once
  (the original loaded it twice), concurrent calls share its decodes and take
  no Python lock, the memory budget and idle unloading apply, and an unload
  waits for the calls in flight instead of freeing a model in use;
- embed_text() without an embedding model embeds through the reasoning
  model's file (the original raised RuntimeError); ManagedModel.embed on a
  model configured without embeddings still raises RuntimeError, as before;
- n_threads is capped to the CPUs the process may use (4 threads on 2 CPUs
  ran 1,000x slower), and n_gpu_layers is ignored where there is no GPU;
- an unusable DREAMER_MODEL_PATH raises ValueError naming it when the
  orchestra is made, not at the first load; a bad number in a DREAMER_*
  variable raises ValueError naming the variable; a model file that cannot
  be loaded raises ModelLoadError, a ValueError as llama-cpp-python's was,
  whose message names the role and the file.
Because weights are shared, a role whose file another role loaded reports
is_loaded True, and unloading it unloads that file for both.
"""

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum, auto
from pathlib import Path
from typing import Protocol

from . import Orchestra
from .errors import OrchestraError

logger = logging.getLogger(__name__)

# llama-cpp-python's create_completion defaults for what the original did not set
_TOP_K = 40
_MIN_P = 0.05
_UNLIMITED = 1 << 22


class ModelRole(Enum):
    """Cognitive role a model serves."""

    REASONING = auto()
    CODER = auto()
    EMBEDDING = auto()


@dataclass
class ModelConfig:
    """Configuration for a single model."""

    path: Path
    role: ModelRole
    n_ctx: int = 4096
    n_gpu_layers: int = 99
    n_threads: int = 4
    embedding: bool = False

    @property
    def name(self) -> str:
        """Human-readable name from path."""
        return Path(self.path).stem if self.path else f"{self.role.name.lower()}_model"


@dataclass
class GenerationParams:
    """Parameters for text generation."""

    max_tokens: int = 1024
    temperature: float = 0.7
    top_p: float = 0.9
    repeat_penalty: float = 1.1
    stop: list[str] = field(default_factory=list)


class ModelInterface(Protocol):
    """Protocol for model implementations (allows mocking)."""

    def generate(self, prompt: str, params: GenerationParams) -> str: ...
    def embed(self, text: str) -> list[float]: ...
    def unload(self) -> None: ...


# --- settings -------------------------------------------------------------

_DEFAULT_MODEL = Path("/models/qwen2.5-14b-instruct-q4_k_m.gguf")
# field -> (default, minimum) for the numbers, None for the paths
_FIELDS = {
    "model_path": None, "coder_model_path": None, "embed_model_path": None,
    "n_gpu_layers": (99, 0), "n_ctx": (4096, 512), "n_threads": (4, 1),
}


def _unquote(v):
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        inner = v[1:-1]
        return inner.replace("\\n", "\n").replace('\\"', '"') if v[0] == '"' else inner
    hash_at = v.find(" #")
    return (v[:hash_at] if hash_at >= 0 else v).strip()


def read_env_file(path):
    """KEY=VALUE lines of a dotenv file as a dict ({} when it does not
    exist): blank lines and # comments skipped, an optional 'export ',
    values unquoted, an unquoted value's ' #' comment dropped."""
    out = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("export "):
            s = s[len("export "):].lstrip()
        key, eq, value = s.partition("=")
        if eq:
            out[key.strip()] = _unquote(value)
    return out


def _model_path(v):
    # the original's resolve_path validator
    if v is None:
        return None
    if isinstance(v, str):
        v = v.strip()
        if not v or v.endswith("/") or not v.endswith(".gguf"):
            return None
    p = Path(v)
    return p.resolve() if p.exists() else p


class Settings:
    """The original's model settings: each field from DREAMER_<FIELD> in the
    environment (any case), else in env_file, else its default. Keyword
    arguments set fields directly. Raises ValueError naming a variable whose
    value is not a whole number or is below its minimum."""

    def __init__(self, env_file=".env", **values):
        unknown = set(values) - set(_FIELDS)
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        found = {k.lower(): v for k, v in (read_env_file(env_file) if env_file else {}).items()}
        found.update({k.lower(): v for k, v in os.environ.items()})
        for name, spec in _FIELDS.items():
            var = "DREAMER_" + name.upper()
            raw = values[name] if name in values else found.get(var.lower())
            if spec is None:
                default = _DEFAULT_MODEL if name == "model_path" else None
                setattr(self, name, default if raw is None and name not in values
                        else _model_path(raw))
                continue
            default, lo = spec
            if raw is None:
                setattr(self, name, default)
                continue
            try:
                n = int(raw.strip()) if isinstance(raw, str) else int(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{var}={raw!r} is not a whole number") from None
            if n < lo:
                raise ValueError(f"{var}={raw!r} is below its minimum of {lo}")
            setattr(self, name, n)

    def __repr__(self):
        return "Settings(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in _FIELDS) + ")"


settings = Settings()


# --- models ---------------------------------------------------------------

def _section(config):
    sec = {"path": str(config.path), "n_ctx": config.n_ctx,
           "n_gpu_layers": config.n_gpu_layers, "n_threads": config.n_threads}
    if config.embedding:
        sec["embedding"] = True
    return sec


def _sampling(params):
    mt = params.max_tokens
    kw = {"max_tokens": mt if mt is not None and mt > 0 else _UNLIMITED,
          "temperature": params.temperature, "top_p": params.top_p,
          "repeat_penalty": params.repeat_penalty, "top_k": _TOP_K, "min_p": _MIN_P}
    if params.stop:
        kw["stop"] = list(params.stop)
    return kw


class ModelLoadError(ValueError):
    """A model file that cannot be loaded (missing, unreadable, not a
    model): a ValueError, as llama-cpp-python raised in the original.
    `cause` is the OrchestraError, whose message names the role and file."""

    def __init__(self, cause):
        super().__init__(str(cause))
        self.cause = cause


_LOAD_CODES = ("ORCH_ENOENT", "ORCH_EACCES", "ORCH_EISDIR", "ORCH_EFORMAT")


def _call(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except OrchestraError as e:
        if e.code_name in _LOAD_CODES:
            raise ModelLoadError(e) from e
        raise


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class ManagedModel:
    """One model, loaded lazily (single-flight: threads that ask at once
    wait for one load). Alone, ManagedModel(config) runs its own Orchestra;
    ModelOrchestra's share one. Thread-safe."""

    def __init__(self, config: ModelConfig, *, _orchestra=None, _role=None) -> None:
        self.config = config
        self._lock = threading.Lock()
        if _orchestra is None:
            if not config.path:
                raise ValueError(f"{config.role.name} model: no path")
            _role = config.role.name.lower()
            _orchestra = Orchestra.from_dict({_role: _section(config)})
            self._own = True
        else:
            self._own = False
        self._orch = _orchestra
        self._role = _role

    @property
    def is_loaded(self) -> bool:
        for s in self._orch.status():
            if s["role"] == self._role:
                return s["state"] == "ready"
        return False

    @contextlib.contextmanager
    def managed(self) -> Iterator["ManagedModel"]:
        """Loads for the block and unloads when it ends (once the calls in
        flight end)."""
        self.load()
        try:
            yield self
        finally:
            self.unload()

    def load(self) -> None:
        """Loads the model (thread-safe; a no-op when it is loaded)."""
        logger.info(f"Loading {self.config.role.name} model: {self.config.path}")
        _call(self._orch.preload, self._role)
        logger.info(f"{self.config.role.name} model loaded")

    def unload(self) -> None:
        """Releases the model once the calls using it end (thread-safe)."""
        self._orch.unload(self._role)
        logger.info(f"{self.config.role.name} model unloaded")

    def generate(self, prompt: str, params: GenerationParams) -> str:
        """Completes prompt (loading the model first if it is not)."""
        return _call(self._orch.generate, self._role, prompt, **_sampling(params)).text

    def embed(self, text: str) -> list[float]:
        """The embedding vector of text (not normalized, and a text past the
        context cut to its first tokens, as llama-cpp-python's embed did).
        Raises RuntimeError when the model is not configured for embeddings."""
        if not self.config.embedding:
            raise RuntimeError(f"{self.config.role.name} model not configured for embeddings")
        return _call(self._orch.embed, [text], role=self._role, normalize=False, truncate=True)[0]

    def close(self) -> None:
        """Frees a ManagedModel's own Orchestra (not one it shares)."""
        if self._own:
            self._orch.close()


class ModelOrchestra:
    """The reasoning model, and the coder and embedding models where their
    files exist (else the reasoning model serves), as one Orchestra.
    Paths default to the settings. Raises ValueError when the reasoning
    model's path is unusable."""

    def __init__(self, reasoning_path: Path | None = None, coder_path: Path | None = None,
                 embed_path: Path | None = None) -> None:
        s = settings
        path = reasoning_path or s.model_path
        if not path:
            raise ValueError("DREAMER_MODEL_PATH: the reasoning model's path must end in .gguf")
        reasoning = ModelConfig(path=Path(path), role=ModelRole.REASONING, n_ctx=s.n_ctx,
                                n_gpu_layers=s.n_gpu_layers, n_threads=s.n_threads)
        coder_path = coder_path or s.coder_model_path
        coder = None
        if coder_path and Path(coder_path).exists():
            coder = ModelConfig(path=Path(coder_path), role=ModelRole.CODER, n_ctx=4096,
                                n_gpu_layers=s.n_gpu_layers, n_threads=s.n_threads)
        embed_path = embed_path or s.embed_model_path
        embed = None
        if embed_path and Path(embed_path).exists():
            embed = ModelConfig(path=Path(embed_path), role=ModelRole.EMBEDDING, n_ctx=512,
                                n_gpu_layers=0, n_threads=s.n_threads, embedding=True)
        sections = {"reasoning": _section(reasoning)}
        if coder:
            sections["coder"] = _section(coder)
        # the embed role is always there: the reasoning model's file when
        # there is no embedding model, so embed_text() works either way
        sections["embed"] = _section(embed) if embed else {"fallback": "reasoning",
                                                            "embedding": True}
        if embed and any(_same_file(embed.path, c.path) for c in (reasoning, coder) if c):
            # one file is one set of weights in one place: the embedding
            # role takes the other role's GPU layers instead of its own 0
            sections["embed"]["n_gpu_layers"] = s.n_gpu_layers
        self._orch = Orchestra.from_dict(sections)
        self._reasoning = ManagedModel(reasoning, _orchestra=self._orch, _role="reasoning")
        self._coder = coder and ManagedModel(coder, _orchestra=self._orch, _role="coder")
        self._embed = embed and ManagedModel(embed, _orchestra=self._orch, _role="embed")
        logger.info(
            f"Orchestra initialized: reasoning={reasoning.name}, "
            f"coder={'dedicated' if self._coder else 'shared'}, "
            f"embed={'dedicated' if self._embed else 'shared'}"
        )

    @property
    def reasoning(self) -> ManagedModel:
        """The reasoning model."""
        return self._reasoning

    @property
    def coder(self) -> ManagedModel:
        """The coder model (or the reasoning model if there is none)."""
        return self._coder if self._coder else self._reasoning

    @property
    def embed(self) -> ManagedModel:
        """The embedding model (or the reasoning model if there is none)."""
        return self._embed if self._embed else self._reasoning

    def reason(self, prompt: str, temperature: float = 0.7, max_tokens: int = 1024) -> str:
        """Deliberate reasoning: the reasoning model, top_p 0.9, repeat 1.1."""
        return self._reasoning.generate(prompt, GenerationParams(
            max_tokens=max_tokens, temperature=temperature, top_p=0.9, repeat_penalty=1.1))

    def code(self, prompt: str, temperature: float = 0.3, max_tokens: int = 2048) -> str:
        """Code: the coder model, top_p 0.95, repeat 1.15."""
        return self.coder.generate(prompt, GenerationParams(
            max_tokens=max_tokens, temperature=temperature, top_p=0.95, repeat_penalty=1.15))

    def dream(self, prompt: str, temperature: float = 0.9, max_tokens: int = 1024) -> str:
        """Exploration: the reasoning model, top_p 0.95, repeat 1.15."""
        return self._reasoning.generate(prompt, GenerationParams(
            max_tokens=max_tokens, temperature=temperature, top_p=0.95, repeat_penalty=1.15))

    def embed_text(self, text: str) -> list[float]:
        """The embedding model's vector for text; without one, the reasoning
        model's file embeds it (the original raised RuntimeError)."""
        if self._embed:
            return self._embed.embed(text)
        return _call(self._orch.embed, [text], role="embed", normalize=False, truncate=True)[0]

    def preload(self, roles: list[ModelRole] | None = None) -> None:
        """Loads the roles' models (default: the reasoning model), in
        parallel; a role without a model of its own is skipped."""
        roles = roles or [ModelRole.REASONING]
        names = []
        if ModelRole.REASONING in roles:
            names.append("reasoning")
        if ModelRole.CODER in roles and self._coder:
            names.append("coder")
        if ModelRole.EMBEDDING in roles and self._embed:
            names.append("embed")
        _call(self._orch.preload, *names)

    def unload_all(self) -> None:
        """Releases every model once the calls in flight end."""
        self._orch.unload_all()

    def status(self) -> dict[str, bool]:
        """Whether each model is loaded: {"reasoning", "coder", "embed"}; a
        role without a model of its own is False."""
        ready = {s["role"]: s["state"] == "ready" for s in self._orch.status()}
        return {
            "reasoning": ready.get("reasoning", False),
            "coder": ready.get("coder", False) if self._coder else False,
            "embed": ready.get("embed", False) if self._embed else False,
        }

    def close(self) -> None:
        """Frees the Orchestra (after the calls in flight end). Not in the
        original, which never freed its models."""
        self._orch.close()


_orchestra: ModelOrchestra | None = None
_orchestra_lock = threading.Lock()


def get_orchestra() -> ModelOrchestra:
    """The process's ModelOrchestra, made on the first call (thread-safe)."""
    global _orchestra
    with _orchestra_lock:
        if _orchestra is None:
            _orchestra = ModelOrchestra()
        return _orchestra


__all__ = ["ModelRole", "ModelConfig", "GenerationParams", "ModelInterface", "ManagedModel",
           "ModelOrchestra", "ModelLoadError", "Settings", "settings", "get_orchestra", "read_env_file"]
