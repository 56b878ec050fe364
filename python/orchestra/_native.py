"""ctypes bindings to liborchestra.so: the structs and functions of
include/orchestra.h that the package uses, declared once. Internal."""

import ctypes
import ctypes.util
import os
import pathlib

c_int, c_int32, c_uint32, c_int64, c_uint64 = (ctypes.c_int, ctypes.c_int32, ctypes.c_uint32,
                                                ctypes.c_int64, ctypes.c_uint64)
c_bool, c_float, c_double, c_size_t = ctypes.c_bool, ctypes.c_float, ctypes.c_double, ctypes.c_size_t
c_char_p, c_void_p, POINTER = ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER

ERROR_MSG_MAX = 512
SONAME = "liborchestra.so.0"


class Error(ctypes.Structure):
    _fields_ = [("code", c_int), ("msg", ctypes.c_char * ERROR_MSG_MAX)]


TEXT_FN = ctypes.CFUNCTYPE(c_bool, c_void_p, c_size_t, c_void_p)
PROGRESS_FN = ctypes.CFUNCTYPE(c_bool, c_char_p, c_float, c_void_p)


class GenParams(ctypes.Structure):
    _fields_ = [("max_tokens", c_int32), ("temperature", c_float), ("top_k", c_int32),
                ("top_p", c_float), ("min_p", c_float), ("repeat_penalty", c_float),
                ("repeat_last_n", c_int32), ("seed", c_uint32),
                ("stop", POINTER(c_char_p)), ("n_stop", c_size_t),
                ("n_ctx", c_int32), ("n_threads", c_int32),
                ("on_text", TEXT_FN), ("user_data", c_void_p),
                ("no_cache", c_bool), ("cancel", POINTER(c_int32)),
                ("presence_penalty", c_float), ("frequency_penalty", c_float),
                ("grammar", c_char_p), ("json_schema", c_char_p),
                ("context", POINTER(c_int32)), ("n_context", c_size_t),
                ("return_context", c_bool), ("suffix", c_char_p)]


class GenResult(ctypes.Structure):
    _fields_ = [("text", c_void_p), ("len", c_size_t), ("n_prompt", c_int32),
                ("n_generated", c_int32), ("n_cached", c_int32), ("finish", c_int),
                ("load_wait_ms", c_double), ("prompt_ms", c_double), ("gen_ms", c_double),
                ("context", POINTER(c_int32)), ("n_context", c_size_t)]


class EmbedParams(ctypes.Structure):
    _fields_ = [("normalize", c_bool), ("n_threads", c_int32), ("n_tokens", POINTER(c_int64)),
                ("truncate", c_bool), ("n_ctx", c_int32)]


class ModelParams(ctypes.Structure):
    _fields_ = [("path", c_char_p), ("role", c_char_p), ("backend", c_void_p),
                ("n_ctx", c_int32), ("n_gpu_layers", c_int32), ("n_threads", c_int32),
                ("n_batch", c_int32), ("n_parallel", c_int32),
                ("progress", PROGRESS_FN), ("progress_user_data", c_void_p),
                ("embedding", c_bool), ("use_mmap", c_bool), ("use_mlock", c_bool),
                ("no_repack", c_bool),
                ("vet", c_bool), ("stream_latency_ms", c_int32)]


class ToolCall(ctypes.Structure):
    _fields_ = [("id", c_char_p), ("name", c_char_p), ("arguments", c_char_p)]


class ChatMessage(ctypes.Structure):
    _fields_ = [("role", c_char_p), ("content", c_char_p),
                ("tool_calls", POINTER(ToolCall)), ("n_tool_calls", c_size_t),
                ("tool_call_id", c_char_p), ("name", c_char_p), ("reasoning", c_char_p)]


DELTA_FN = ctypes.CFUNCTYPE(None, c_void_p, c_void_p)


class ChatParams(ctypes.Structure):
    _fields_ = [("tools", c_char_p), ("tool_choice", c_int), ("tool_name", c_char_p),
                ("parallel_tool_calls", c_bool), ("json_schema", c_char_p), ("grammar", c_char_p),
                ("reasoning", c_int), ("template_kwargs", c_char_p), ("on_delta", DELTA_FN),
                ("user_data", c_void_p), ("prompt_without_template", c_bool)]


class ChatReply(ctypes.Structure):
    _fields_ = [("content", c_char_p), ("reasoning", c_char_p), ("tool_calls", POINTER(ToolCall)),
                ("n_tool_calls", c_size_t)]


class ChatResult(ctypes.Structure):
    _fields_ = [("gen", GenResult), ("reply", ChatReply)]


class OrchestraParams(ctypes.Structure):
    _fields_ = [("backend", c_void_p), ("role_backends", c_void_p), ("n_role_backends", c_size_t),
                ("clock", c_void_p), ("clock_user_data", c_void_p), ("no_reaper", c_bool),
                ("progress", PROGRESS_FN), ("progress_user_data", c_void_p)]


class RoleStatus(ctypes.Structure):
    _fields_ = [("role", ctypes.c_char * 64), ("aliases", ctypes.c_char * 256),
                ("model_role", ctypes.c_char * 64), ("path", ctypes.c_char * 512),
                ("state", c_int), ("bytes", c_uint64), ("bytes_estimated", c_bool),
                ("n_leases", c_int64), ("n_parallel", c_int32), ("pinned", c_bool),
                ("idle_ms", c_int64), ("unload_in_ms", c_int64),
                ("last_error", ctypes.c_char * ERROR_MSG_MAX),
                ("n_faults", c_int32), ("refused", c_bool), ("fault", ctypes.c_char * 384),
                ("n_ctx", c_int32), ("n_gpu_layers", c_int32)]


class BudgetStatus(ctypes.Structure):
    _fields_ = [("budget", c_uint64), ("used", c_uint64), ("n_evictions", c_int64)]


def _candidates():
    env = os.environ.get("ORCH_LIB")
    if env:
        yield env  # the user said where: nothing else
        return
    here = pathlib.Path(__file__).resolve().parent
    yield str(here / SONAME)                              # shipped beside the package
    for up in (here.parent.parent, here.parent.parent.parent):
        yield str(up / SONAME)                            # <prefix>/lib/python3/.../orchestra
    yield str(here.parent.parent / "build" / SONAME)      # a source checkout's build/
    found = ctypes.util.find_library("orchestra")         # the system's (ldconfig)
    if found:
        yield found


def load():
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path)
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
    raise ImportError("liborchestra.so not found; set ORCH_LIB to its path. Tried: " +
                      ", ".join(tried))


lib = load()


def _fn(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


E = POINTER(Error)
orch_version = _fn("orch_version", c_char_p)
orch_llama_version = _fn("orch_llama_version", c_char_p)
orch_llama_devices = _fn("orch_llama_devices", c_char_p)
orch_err_name = _fn("orch_err_name", c_char_p, c_int)
orch_strerror = _fn("orch_strerror", c_char_p, c_int)
orch_free = _fn("orch_free", None, c_void_p)
orch_state_name = _fn("orch_state_name", c_char_p, c_int)
orch_finish_name = _fn("orch_finish_name", c_char_p, c_int)

orch_gen_default_params = _fn("orch_gen_default_params", GenParams)
orch_embed_default_params = _fn("orch_embed_default_params", EmbedParams)
orch_model_default_params = _fn("orch_model_default_params", ModelParams)
orch_orchestra_default_params = _fn("orch_orchestra_default_params", OrchestraParams)
orch_gen_result_clear = _fn("orch_gen_result_clear", None, POINTER(GenResult))

orch_model_new = _fn("orch_model_new", c_int, POINTER(ModelParams), POINTER(c_void_p), E)
orch_model_free = _fn("orch_model_free", None, c_void_p)
orch_model_load = _fn("orch_model_load", c_int, c_void_p, E)
orch_model_unload = _fn("orch_model_unload", c_int, c_void_p)
orch_model_state = _fn("orch_model_state", c_int, c_void_p)
orch_model_generate = _fn("orch_model_generate", c_int, c_void_p, c_char_p, POINTER(GenParams),
                          POINTER(GenResult), E)
orch_model_chat = _fn("orch_model_chat", c_int, c_void_p, POINTER(ChatMessage), c_size_t,
                      POINTER(GenParams), POINTER(GenResult), E)
orch_model_embed = _fn("orch_model_embed", c_int, c_void_p, POINTER(c_char_p), c_size_t,
                       POINTER(EmbedParams), POINTER(POINTER(c_float)), POINTER(c_int32), E)

orch_config_load = _fn("orch_config_load", c_int, c_char_p, POINTER(c_void_p), E)
orch_config_new = _fn("orch_config_new", c_int, POINTER(c_void_p), E)
orch_config_set = _fn("orch_config_set", c_int, c_void_p, c_char_p, c_char_p, c_char_p, E)
orch_config_validate = _fn("orch_config_validate", c_int, c_void_p, E)
orch_config_free = _fn("orch_config_free", None, c_void_p)
orch_open = _fn("orch_open", c_int, c_void_p, POINTER(OrchestraParams), POINTER(c_void_p), E)
orch_close = _fn("orch_close", None, c_void_p)
orch_role_gen_params = _fn("orch_role_gen_params", c_int, c_void_p, c_char_p, POINTER(GenParams), E)
orch_generate = _fn("orch_generate", c_int, c_void_p, c_char_p, c_char_p, POINTER(GenParams),
                    POINTER(GenResult), E)
orch_chat = _fn("orch_chat", c_int, c_void_p, c_char_p, POINTER(ChatMessage), c_size_t,
                POINTER(GenParams), POINTER(GenResult), E)
orch_chat_default_params = _fn("orch_chat_default_params", ChatParams)
orch_chat_result_clear = _fn("orch_chat_result_clear", None, POINTER(ChatResult))
orch_chat_ext = _fn("orch_chat_ext", c_int, c_void_p, c_char_p, POINTER(ChatMessage), c_size_t,
                    POINTER(ChatParams), POINTER(GenParams), POINTER(ChatResult), E)
orch_model_chat_ext = _fn("orch_model_chat_ext", c_int, c_void_p, POINTER(ChatMessage), c_size_t,
                          POINTER(ChatParams), c_char_p, POINTER(GenParams), POINTER(ChatResult), E)
orch_embed = _fn("orch_embed", c_int, c_void_p, c_char_p, POINTER(c_char_p), c_size_t,
                 POINTER(EmbedParams), POINTER(POINTER(c_float)), POINTER(c_int32), E)
orch_preload = _fn("orch_preload", c_int, c_void_p, POINTER(c_char_p), c_size_t, E)
orch_unload = _fn("orch_unload", c_int, c_void_p, c_char_p, E)
orch_unload_all = _fn("orch_unload_all", None, c_void_p)
orch_status = _fn("orch_status", c_int, c_void_p, POINTER(POINTER(RoleStatus)), POINTER(c_size_t),
                  POINTER(BudgetStatus), E)
