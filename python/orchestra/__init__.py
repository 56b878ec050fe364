"""Orchestra for Python: several local language models side by side.

Standard library only: liborchestra.so through ctypes, found through
$ORCH_LIB, beside this package, in the install prefix it was installed
under, in a source checkout's build/, or on the system's library path.

    from orchestra import Orchestra
    with Orchestra("roles.ini") as o:
        print(o.generate("coder", "def fib(n):", max_tokens=64).text)
        for piece in o.stream("reasoning", "Once upon a time"):
            print(piece, end="", flush=True)
        vectors = o.embed(["a cat", "a dog"])

Every call releases the GIL while the library works (so many Python
threads generate at once, batched together by the library), and a
KeyboardInterrupt during a call made on the main thread cancels it.
Errors raise OrchestraError subclasses named after the library's codes
(ENOENT, EFORMAT, ENOROLE, EBUDGET, ...); bad arguments raise TypeError or
ValueError before anything reaches the library.
"""

import ctypes
import json
import dataclasses
import math
import queue
import re
import threading

from . import _native as N
from .errors import *  # noqa: F401,F403 (the code classes)
from .errors import OrchestraError, raise_for

__all__ = ["Orchestra", "Model", "Result", "OrchestraError", "version", "llama_version",
            "llama_devices"]
__all__ += [n for n in dir() if n.isupper() and n.startswith("E")]

SEED_RANDOM = 0xFFFFFFFF
# the C enums' names, from the library itself (not typed again here)
_FINISH = {i: N.orch_finish_name(i).decode() for i in range(6)}
_STATES = {i: N.orch_state_name(i).decode() for i in range(5)}


def version():
    """The library's version ("0.1.0")."""
    return N.orch_version().decode()


def llama_version():
    """The llama.cpp version the library runs on."""
    return N.orch_llama_version().decode()


def llama_devices():
    """The devices llama.cpp found: a list of (name, type, description),
    type one of "cpu", "gpu", "igpu", "accel"."""
    kinds = "(?:cpu|gpu|igpu|accel|other)"
    item = re.compile(r"(\S+) \((%s), (.*?)\)(?=, \S+ \(%s, |$)" % (kinds, kinds))
    return [m.groups() for m in item.finditer(N.orch_llama_devices().decode())]


@dataclasses.dataclass
class Result:
    """What a generation gave: the text, why it ended ("stop", "length",
    "eos", "cancelled"), token counts and timings (milliseconds)."""
    text: str
    finish: str
    n_prompt: int
    n_generated: int
    n_cached: int
    load_wait_ms: float
    prompt_ms: float
    gen_ms: float
    # a chat's reply, parsed in the model's own format: the answer, the
    # reasoning split out, and tool calls as {"id", "name", "arguments"}
    # (arguments: the JSON text the model wrote)
    content: str = None
    reasoning: str = None
    tool_calls: list = None

    def __str__(self):
        return self.text


# ---- arguments: checked here, before C sees them ---------------------------------

def _int(name, v, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int, not {type(v).__name__}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} = {v} is out of range ({lo} .. {hi})")
    return v


def _float(name, v, ok, expect):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v) or not ok(v):
        raise ValueError(f"{name} = {v} must be {expect}")
    return v


def _text(name, v):
    if not isinstance(v, str):
        raise TypeError(f"{name} must be a str, not {type(v).__name__}")
    if "\0" in v:
        raise ValueError(f"{name} contains a NUL character")
    return v.encode("utf-8", "strict")


_GEN_KEYS = ("max_tokens", "temperature", "top_k", "top_p", "min_p", "repeat_penalty",
             "repeat_last_n", "seed", "stop", "n_ctx", "n_threads", "no_cache",
             "presence_penalty", "frequency_penalty", "grammar", "json_schema")


class _Gen:
    """A GenParams and what it points to, kept alive for the call."""

    def __init__(self, base, params):
        self.p = base
        self.flag = ctypes.c_int32(0)
        self.p.cancel = ctypes.pointer(self.flag)
        self.p.on_text = N.TEXT_FN()
        self.keep = []
        for k, v in params.items():
            if k not in _GEN_KEYS:
                raise TypeError(f"unknown generation parameter '{k}' (known: {', '.join(_GEN_KEYS)})")
            if v is None:
                continue
            if k == "max_tokens":
                self.p.max_tokens = _int(k, v, 1, 1 << 22)
            elif k == "temperature":
                self.p.temperature = _float(k, v, lambda x: x >= 0, "0 (greedy) or more")
            elif k == "top_k":
                self.p.top_k = _int(k, v, 0)
            elif k == "top_p":
                self.p.top_p = _float(k, v, lambda x: 0 < x <= 1, "in (0, 1]")
            elif k == "min_p":
                self.p.min_p = _float(k, v, lambda x: 0 <= x < 1, "in [0, 1)")
            elif k == "repeat_penalty":
                self.p.repeat_penalty = _float(k, v, lambda x: x > 0, "above 0")
            elif k in ("grammar", "json_schema"):
                b = _text(k, v if isinstance(v, str) else json.dumps(v))
                self.keep.append(b)
                setattr(self.p, k, b)
            elif k in ("presence_penalty", "frequency_penalty"):
                setattr(self.p, k, _float(k, v, lambda x: -2 <= x <= 2, "in [-2, 2]"))
            elif k == "repeat_last_n":
                self.p.repeat_last_n = _int(k, v, -1)
            elif k == "seed":
                self.p.seed = _int(k, v, 0, SEED_RANDOM)
            elif k == "stop":
                stops = [v] if isinstance(v, str) else v
                if not isinstance(stops, (list, tuple)):
                    raise TypeError("stop must be a str or a list of str")
                enc = []
                for s in stops:
                    b = _text("a stop string", s)
                    if not b:
                        raise ValueError("a stop string is empty")
                    enc.append(b)
                arr = (ctypes.c_char_p * max(1, len(enc)))(*enc)
                self.keep.append(arr)
                self.p.stop = ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p))
                self.p.n_stop = len(enc)
            elif k == "n_ctx":
                self.p.n_ctx = _int(k, v, 0, 1 << 22)
            elif k == "n_threads":
                self.p.n_threads = _int(k, v, 0, 1024)
            elif k == "no_cache":
                if not isinstance(v, bool):
                    raise TypeError("no_cache must be a bool")
                self.p.no_cache = v

    def on_piece(self, fn):
        """Streams pieces to fn(str); fn runs on the generating thread."""
        def cb(ptr, n, _ud):
            if self.flag.value:
                return False
            fn(ctypes.string_at(ptr, n).decode("utf-8", "replace"))
            return True
        self.p.on_text = N.TEXT_FN(cb)
        self.keep.append(self.p.on_text)


def _messages(messages):
    """An array of C messages from dicts (role, content, tool_calls,
    tool_call_id, name, reasoning_content) or (role, content) pairs; the
    encoded strings ride on the array (arr._keep)."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...}")
    arr = (N.ChatMessage * len(messages))()
    keep = []
    arr._keep = keep
    for i, m in enumerate(messages):
        if isinstance(m, dict):
            role, content = m.get("role"), m.get("content")
        elif isinstance(m, (tuple, list)) and len(m) == 2:
            role, content, m = m[0], m[1], {}
        else:
            raise TypeError(f"message {i} must be a dict with role and content, or a (role, content) pair")
        if role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"message {i} has role {role!r} (expected system, user, assistant or tool)")
        arr[i].role = role.encode()
        calls = m.get("tool_calls") or []
        if content is None and role == "assistant" and calls:
            content = ""
        arr[i].content = _text(f"message {i}'s content", content)
        for key, field in (("tool_call_id", "tool_call_id"), ("name", "name"),
                           ("reasoning_content", "reasoning")):
            if m.get(key) is not None:
                b = _text(f"message {i}'s {key}", m[key])
                keep.append(b)
                setattr(arr[i], field, b)
        if calls:
            tc = (N.ToolCall * len(calls))()
            keep.append(tc)
            for k, c in enumerate(calls):
                f = c.get("function", c) if isinstance(c, dict) else None
                if not isinstance(f, dict) or not f.get("name"):
                    raise ValueError(f"message {i}'s tool call {k} has no name")
                args = f.get("arguments", {})
                args = args if isinstance(args, str) else json.dumps(args)
                vals = [_text("a tool call's name", f["name"]), _text("arguments", args)]
                keep.extend(vals)
                tc[k].name, tc[k].arguments = vals
                if c.get("id"):
                    tc[k].id = _text("a tool call's id", c["id"])
                    keep.append(tc[k].id)
            arr[i].tool_calls = tc
            arr[i].n_tool_calls = len(calls)
    return arr


_CHAT_KEYS = ("tools", "tool_choice", "parallel_tool_calls", "json_schema", "grammar", "reasoning",
              "template_kwargs")
_REASONING = {"split": 1, "inline": 2, "off": 3, True: 1, False: 3}


def _chat_params(params):
    """Splits params into a ChatParams (and the strings it points to) and
    the generation parameters."""
    cp = N.orch_chat_default_params()
    keep = []

    def put(field, b):
        keep.append(b)
        setattr(cp, field, b)

    for k in _CHAT_KEYS:
        v = params.pop(k, None)
        if v is None:
            continue
        if k == "tools":
            put("tools", _text("tools", v if isinstance(v, str) else json.dumps(v)))
        elif k == "tool_choice":
            if isinstance(v, dict):
                v = (v.get("function") or v).get("name")
            if v in ("auto", "none", "required"):
                cp.tool_choice = ("auto", "none", "required").index(v)
            elif isinstance(v, str) and v:
                cp.tool_choice = 3
                put("tool_name", _text("tool_choice", v))
            else:
                raise ValueError("tool_choice must be 'auto', 'none', 'required' or a function name")
        elif k == "parallel_tool_calls":
            cp.parallel_tool_calls = bool(v)
        elif k in ("json_schema", "template_kwargs"):
            put(k, _text(k, v if isinstance(v, str) else json.dumps(v)))
        elif k == "grammar":
            put("grammar", _text("grammar", v))
        elif k == "reasoning":
            if v not in _REASONING:
                raise ValueError("reasoning must be 'split', 'inline', 'off' (or True / False)")
            cp.reasoning = _REASONING[v]
    return cp, keep


def _chat_result(res):
    r = res.reply
    calls = [{"id": (r.tool_calls[i].id or b"").decode(), "name": r.tool_calls[i].name.decode(),
              "arguments": r.tool_calls[i].arguments.decode()} for i in range(r.n_tool_calls)]
    content = (r.content or b"").decode("utf-8", "replace")
    reasoning = (r.reasoning or b"").decode("utf-8", "replace")
    g = res.gen
    text = ctypes.string_at(g.text, g.len).decode("utf-8", "replace") if g.text else ""
    out = Result(text, _FINISH.get(g.finish, "none"), g.n_prompt, g.n_generated, g.n_cached,
                 g.load_wait_ms, g.prompt_ms, g.gen_ms, content, reasoning, calls)
    N.orch_chat_result_clear(ctypes.byref(res))
    return out


def _texts(texts):
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, (list, tuple)) or not texts:
        raise ValueError("texts must be a str or a non-empty list of str")
    enc = []
    for i, t in enumerate(texts):
        b = _text(f"text {i}", t)
        if not b:
            raise ValueError(f"text {i} is empty")
        enc.append(b)
    return (ctypes.c_char_p * len(enc))(*enc), len(enc)


def _vectors(out, n, dim):
    flat = ctypes.cast(out, ctypes.POINTER(ctypes.c_float * (n * dim))).contents
    vals = list(flat)
    N.orch_free(out)
    return [vals[i * dim:(i + 1) * dim] for i in range(n)]


def _result(res):
    text = ctypes.string_at(res.text, res.len).decode("utf-8", "replace") if res.text else ""
    r = Result(text, _FINISH.get(res.finish, "none"), res.n_prompt, res.n_generated,
               res.n_cached, res.load_wait_ms, res.prompt_ms, res.gen_ms)
    N.orch_gen_result_clear(ctypes.byref(res))
    return r


_runner_q = None
_runner_lock = threading.Lock()


def _runner():
    while True:
        fn, box, done = _runner_q.get()
        try:
            box["r"] = fn()
        except BaseException as e:  # noqa: B902 (handed to the caller)
            box["e"] = e
        finally:
            done.set()


def _run(fn, flag=None):
    """Runs fn (a library call; the GIL is released inside it). On the main
    thread it runs on a helper thread (one, kept for the process) while the
    main thread waits where a KeyboardInterrupt can reach it: then the call
    is cancelled (flag) or awaited, and the interrupt raised."""
    global _runner_q
    if threading.current_thread() is not threading.main_thread():
        return fn()
    with _runner_lock:
        if _runner_q is None:
            _runner_q = queue.SimpleQueue()
            threading.Thread(target=_runner, name="orchestra-calls", daemon=True).start()
    box = {}
    done = threading.Event()
    _runner_q.put((fn, box, done))
    # (an Event, not Thread.join: an interrupted join can report a thread
    # that is still running as finished)
    try:
        done.wait()
    except KeyboardInterrupt:
        if flag is not None:
            flag.value = 1
        while not done.is_set():
            try:
                done.wait()
            except KeyboardInterrupt:
                pass
        raise
    if "e" in box:
        raise box["e"]
    return box["r"]


class _Handle:
    """A C object shared by threads: calls count in and out; close() waits
    for them, then frees."""

    def __init__(self):
        self._lock = threading.Condition()
        self._active = 0
        self._closed = False
        self._ptr = None

    def _enter(self):
        with self._lock:
            if self._closed or not self._ptr:
                raise N_CLOSED(f"{type(self).__name__} is closed")
            self._active += 1
            return self._ptr

    def _leave(self):
        with self._lock:
            self._active -= 1
            if not self._active:
                self._lock.notify_all()

    def _close(self, free):
        with self._lock:
            if self._closed:
                return
            self._closed = True
            while self._active:
                self._lock.wait()
            ptr, self._ptr = self._ptr, None
        if ptr:
            free(ptr)

    def _call(self, fn):
        """Runs fn(ptr, err) -> rc, a library call on this handle (counted
        in, so close() waits for it), and raises for a nonzero rc."""
        ptr = self._enter()
        try:
            err = N.Error()
            rc = _run(lambda: fn(ptr, ctypes.byref(err)))
            if rc:
                raise_for(rc, err)
        finally:
            self._leave()

    def _embed(self, fn, texts, normalize, truncate):
        """fn(ptr, arr, n, params, out, dim, err): vectors as lists."""
        arr, n = _texts(texts)
        ep = N.orch_embed_default_params()
        ep.normalize = bool(normalize)
        ep.truncate = bool(truncate)
        out = ctypes.POINTER(ctypes.c_float)()
        dim = ctypes.c_int32()
        self._call(lambda ptr, err: fn(ptr, arr, n, ctypes.byref(ep), ctypes.byref(out),
                                       ctypes.byref(dim), err))
        return _vectors(out, n, dim.value)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _gen(self, call, base, params, g=None):
        g = g or _Gen(base, params)
        ptr = self._enter()
        try:
            res = N.GenResult()
            err = N.Error()
            rc = _run(lambda: call(ptr, ctypes.byref(g.p), ctypes.byref(res), ctypes.byref(err)),
                      g.flag)
            if rc:
                raise_for(rc, err)
            return _result(res)
        finally:
            self._leave()

    def _chat(self, call, base, params):
        """A chat: call(ptr, chat_params, gen_params, chat_result, err)."""
        params = dict(params)
        cp, keep = _chat_params(params)
        g = _Gen(base, params)
        ptr = self._enter()
        try:
            res = N.ChatResult()
            err = N.Error()
            rc = _run(lambda: call(ptr, ctypes.byref(cp), ctypes.byref(g.p), ctypes.byref(res),
                                   ctypes.byref(err)), g.flag)
            if rc:
                raise_for(rc, err)
            return _chat_result(res)
        finally:
            self._leave()
            del keep

    def _stream(self, call, base, params):
        """Yields pieces; returns the Result (StopIteration.value). Leaving
        the loop early cancels the generation (its flag is set; the library
        stops before the next token)."""
        g = _Gen(base, params)  # arguments checked now, not at the first next()
        return self._stream_gen(call, g)

    def _stream_gen(self, call, g):
        q = queue.SimpleQueue()
        done = object()
        box = {}
        g.on_piece(q.put)

        def work():
            try:
                box["r"] = self._gen(call, None, None, g)
            except BaseException as e:  # noqa: B902 (handed to the consumer)
                box["e"] = e
            q.put(done)

        t = threading.Thread(target=work, name="orchestra-stream", daemon=True)
        t.start()
        finished = False
        try:
            while True:
                item = q.get()
                if item is done:
                    finished = True
                    break
                yield item
        finally:
            if not finished:
                g.flag.value = 1
            t.join()
        if "e" in box:
            raise box["e"]
        return box["r"]


from .errors import ECLOSED as N_CLOSED  # noqa: E402


class Model(_Handle):
    """One GGUF file, loaded on first use (or load()). Parameters: role
    (a name for logs and errors), n_ctx, n_threads, n_gpu_layers, n_parallel,
    n_batch, embedding, use_mmap, use_mlock, no_repack, vet."""

    _KEYS = {"role": str, "n_ctx": int, "n_threads": int, "n_gpu_layers": int,
             "n_parallel": int, "n_batch": int, "embedding": bool, "use_mmap": bool,
             "use_mlock": bool, "no_repack": bool,
             "vet": bool}

    def __init__(self, path, **params):
        super().__init__()
        p = N.orch_model_default_params()
        self._path = _text("path", str(path) if hasattr(path, "__fspath__") else path)
        p.path = self._path
        self._role = None
        for k, v in params.items():
            t = self._KEYS.get(k)
            if t is None:
                raise TypeError(f"unknown model parameter '{k}' (known: {', '.join(self._KEYS)})")
            if t is int:
                _int(k, v)
            elif not isinstance(v, t):
                raise TypeError(f"{k} must be a {t.__name__}")
            if k == "role":
                self._role = _text("role", v)
                p.role = self._role
            else:
                setattr(p, k, v)
        h = ctypes.c_void_p()
        err = N.Error()
        rc = N.orch_model_new(ctypes.byref(p), ctypes.byref(h), ctypes.byref(err))
        if rc:
            raise_for(rc, err)
        self._ptr = h.value

    def close(self):
        """Unloads and frees, after the calls in flight end."""
        self._close(N.orch_model_free)

    def load(self):
        self._call(N.orch_model_load)

    def unload(self):
        self._call(lambda ptr, err: N.orch_model_unload(ptr))

    @property
    def state(self):
        ptr = self._enter()
        try:
            return _STATES.get(N.orch_model_state(ptr), "unknown")
        finally:
            self._leave()

    @property
    def is_loaded(self):
        return self.state == "ready"

    def generate(self, prompt, **params):
        b = _text("prompt", prompt)
        return self._gen(lambda m, p, r, e: N.orch_model_generate(m, b, p, r, e),
                         N.orch_gen_default_params(), params)

    def stream(self, prompt, **params):
        b = _text("prompt", prompt)
        return self._stream(lambda m, p, r, e: N.orch_model_generate(m, b, p, r, e),
                            N.orch_gen_default_params(), params)

    def chat(self, messages, **params):
        """messages: [{"role", "content", ...}, ...] (see Orchestra.chat)."""
        arr = _messages(messages)
        return self._chat(lambda m, c, p, r, e: N.orch_model_chat_ext(m, arr, len(arr), c, None, p, r,
                                                                      e),
                          N.orch_gen_default_params(), params)

    def embed(self, texts, normalize=True, truncate=False):
        """Vectors for a text or a list of texts (L2-normalised unless told).
        truncate: a text past the embedding context keeps its first tokens
        (else it raises ECTX)."""
        return self._embed(N.orch_model_embed, texts, normalize, truncate)


class Orchestra(_Handle):
    """Roles over models, from an INI config (with its ORCH_* environment
    overrides) or a dict: loaded lazily under the memory budget, unloaded
    when idle, each request batched with the others on its model."""

    def __init__(self, config_path=None, *, _config=None, idle_unload=True):
        super().__init__()
        err = N.Error()
        cfg = ctypes.c_void_p()
        if _config is not None:
            cfg = _config
        else:
            if config_path is None:
                raise TypeError("Orchestra needs a config path (or use Orchestra.from_dict)")
            path = _text("config_path", str(config_path) if hasattr(config_path, "__fspath__")
                         else config_path)
            rc = N.orch_config_load(path, ctypes.byref(cfg), ctypes.byref(err))
            if rc:
                raise_for(rc, err)
        try:
            op = N.orch_orchestra_default_params()
            op.no_reaper = not idle_unload
            h = ctypes.c_void_p()
            rc = N.orch_open(cfg, ctypes.byref(op), ctypes.byref(h), ctypes.byref(err))
            if rc:
                raise_for(rc, err)
            self._ptr = h.value
        finally:
            N.orch_config_free(cfg)

    @classmethod
    def from_dict(cls, config, **kw):
        """{"defaults": {...}, "reasoning": {"path": ..., "temperature": 0.7},
        "coder": {"fallback": "reasoning"}, ...}: sections and keys as in the
        INI file; lists (stop, alias) repeat their key."""
        if not isinstance(config, dict):
            raise TypeError("config must be a dict of sections")
        err = N.Error()
        cfg = ctypes.c_void_p()
        rc = N.orch_config_new(ctypes.byref(cfg), ctypes.byref(err))
        if rc:
            raise_for(rc, err)
        try:
            for section, keys in config.items():
                if not isinstance(section, str) or not isinstance(keys, dict):
                    raise TypeError(f"section {section!r} must map a name to a dict of keys")
                for key, value in keys.items():
                    values = value if isinstance(value, (list, tuple)) else [value]
                    for v in values:
                        if isinstance(v, bool):
                            v = "true" if v else "false"
                        elif not isinstance(v, (str, int, float)):
                            raise TypeError(f"[{section}] {key}: {type(v).__name__} is not a value")
                        rc = N.orch_config_set(cfg, _text("section", section), _text("key", key),
                                               _text("value", str(v)), ctypes.byref(err))
                        if rc:
                            raise_for(rc, err)
        except BaseException:
            N.orch_config_free(cfg)
            raise
        return cls(_config=cfg, **kw)

    def close(self):
        """Unloads everything and frees, after the calls in flight end."""
        self._close(N.orch_close)

    def _role_params(self, ptr, role):
        p = N.GenParams()
        err = N.Error()
        rc = N.orch_role_gen_params(ptr, role, ctypes.byref(p), ctypes.byref(err))
        if rc:
            raise_for(rc, err)
        return p

    def _role_gen(self, role, params, call, stream=False):
        r = _text("role", role)
        ptr = self._enter()
        try:
            base = self._role_params(ptr, r)
        finally:
            self._leave()
        f = (lambda o, p, res, e: call(o, r, p, res, e))
        return (self._stream if stream else self._gen)(f, base, params)

    def generate(self, role, prompt, **params):
        """Completes prompt with the role's model and sampling defaults
        (params override them). Returns a Result."""
        b = _text("prompt", prompt)
        return self._role_gen(role, params, lambda o, r, p, res, e: N.orch_generate(o, r, b, p, res, e))

    def stream(self, role, prompt, **params):
        """As generate, yielding the text piece by piece; leaving the loop
        early cancels the generation. The generator returns the Result."""
        b = _text("prompt", prompt)
        return self._role_gen(role, params,
                              lambda o, r, p, res, e: N.orch_generate(o, r, b, p, res, e), True)

    def chat(self, role, messages, **params):
        """messages: [{"role": "system"|"user"|"assistant"|"tool", "content": str,
        and for an assistant "tool_calls": [{"id", "function": {"name",
        "arguments"}}], for a tool "tool_call_id"}, ...], rendered by the
        model's own template. Besides the generation parameters: tools (a
        list in OpenAI's shape), tool_choice ("auto", "none", "required" or a
        function's name), parallel_tool_calls, json_schema (a dict or JSON
        text the reply must follow), grammar (GBNF), reasoning ("split",
        "inline", "off"), template_kwargs. Returns a Result whose content,
        reasoning and tool_calls are the reply parsed."""
        arr = _messages(messages)
        r = _text("role", role)
        ptr = self._enter()
        try:
            base = self._role_params(ptr, r)
        finally:
            self._leave()
        return self._chat(lambda o, c, p, res, e: N.orch_chat_ext(o, r, arr, len(arr), c, p, res, e),
                          base, params)

    def embed(self, texts, role=None, normalize=True, truncate=False):
        """Vectors for a text or a list of texts (the first role marked
        embedding = true when role is None); truncate as Model.embed."""
        r = None if role is None else _text("role", role)
        return self._embed(lambda ptr, *a: N.orch_embed(ptr, r, *a), texts, normalize, truncate)

    def preload(self, *roles):
        """Loads the roles' models in parallel under the budget."""
        if not roles:
            return
        enc = [_text("role", r) for r in roles]
        arr = (ctypes.c_char_p * len(enc))(*enc)
        self._call(lambda ptr, err: N.orch_preload(ptr, arr, len(enc), err))

    def unload(self, role):
        """Unloads the role's model once its calls in flight end."""
        r = _text("role", role)
        self._call(lambda ptr, err: N.orch_unload(ptr, r, err))

    def unload_all(self):
        self._call(lambda ptr, err: N.orch_unload_all(ptr) or 0)

    def status(self):
        """One dict per role, in config order: role, aliases, model_role,
        path, state, bytes, bytes_estimated, leases, n_parallel, n_ctx, pinned,
        idle_ms, unload_in_ms, error."""
        ptr = self._enter()
        try:
            arr = ctypes.POINTER(N.RoleStatus)()
            n = ctypes.c_size_t()
            b = N.BudgetStatus()
            err = N.Error()
            rc = N.orch_status(ptr, ctypes.byref(arr), ctypes.byref(n), ctypes.byref(b),
                               ctypes.byref(err))
            if rc:
                raise_for(rc, err)
            out = []
            for i in range(n.value):
                s = arr[i]
                out.append({
                    "role": s.role.decode(), "model_role": s.model_role.decode(),
                    "aliases": [a for a in s.aliases.decode().split(",") if a],
                    "path": s.path.decode(), "state": _STATES.get(s.state, "unknown"),
                    "bytes": s.bytes, "bytes_estimated": s.bytes_estimated,
                    "leases": s.n_leases, "n_parallel": s.n_parallel, "n_ctx": s.n_ctx,
                    "pinned": s.pinned,
                    "idle_ms": s.idle_ms, "unload_in_ms": s.unload_in_ms,
                    "error": s.last_error.decode("utf-8", "replace"),
                    "faults": s.n_faults, "refused": s.refused,
                    "fault": s.fault.decode("utf-8", "replace"),
                })
            N.orch_free(arr)
            return out
        finally:
            self._leave()
