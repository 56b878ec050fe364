"""The Python package on the real library and the test model: results equal
the C library's, streaming, errors, many threads, cancelling, struct layout."""

import ctypes
import json
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

import orchestra  # noqa: E402
from orchestra import Model, Orchestra, OrchestraError  # noqa: E402
from orchestra import _native as N  # noqa: E402

MODEL = os.environ.get("ORCH_TEST_MODEL") or str(REPO.parent / "shared/models/stories260K.gguf")
HAVE_MODEL = os.path.isfile(MODEL)
GREEDY = ", there was a little girl named Lily."  # stories260K, "Once upon a time", 11 tokens
BIN = os.environ.get("ORCH_BIN") or str(REPO / "build/orchestra")


def need_model(t):
    return unittest.skipUnless(HAVE_MODEL, f"test model not found at {MODEL}")(t)


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


class Layout(unittest.TestCase):
    """The ctypes mirrors match the header: sizes and offsets from a C probe."""

    STRUCTS = {
        "orch_gen_params": (N.GenParams, ["max_tokens", "temperature", "top_k", "top_p", "min_p",
                                          "repeat_penalty", "repeat_last_n", "seed", "stop",
                                          "n_stop", "n_ctx", "n_threads", "on_text", "user_data",
                                          "no_cache", "cancel", "presence_penalty",
                                          "frequency_penalty", "grammar", "json_schema"]),
        "orch_gen_result": (N.GenResult, ["text", "len", "n_prompt", "n_generated", "n_cached",
                                          "finish", "load_wait_ms", "prompt_ms", "gen_ms"]),
        "orch_embed_params": (N.EmbedParams, ["normalize", "n_threads", "n_tokens"]),
        "orch_model_params": (N.ModelParams, ["path", "role", "backend", "n_ctx", "n_gpu_layers",
                                              "n_threads", "n_batch", "n_parallel", "progress",
                                              "progress_user_data", "embedding", "use_mmap",
                                              "use_mlock", "no_repack"]),
        "orch_chat_message": (N.ChatMessage, ["role", "content", "tool_calls", "n_tool_calls",
                                              "tool_call_id", "name", "reasoning"]),
        "orch_tool_call": (N.ToolCall, ["id", "name", "arguments"]),
        "orch_chat_params": (N.ChatParams, ["tools", "tool_choice", "tool_name",
                                            "parallel_tool_calls", "json_schema", "grammar",
                                            "reasoning", "template_kwargs", "on_delta", "user_data",
                                            "prompt_without_template"]),
        "orch_chat_reply": (N.ChatReply, ["content", "reasoning", "tool_calls", "n_tool_calls"]),
        "orch_chat_result": (N.ChatResult, ["gen", "reply"]),
        "orch_orchestra_params": (N.OrchestraParams, ["backend", "role_backends", "n_role_backends",
                                                      "clock", "clock_user_data", "no_reaper",
                                                      "progress", "progress_user_data"]),
        "orch_role_status": (N.RoleStatus, ["role", "aliases", "model_role", "path", "state",
                                            "bytes", "bytes_estimated", "n_leases", "n_parallel",
                                            "pinned", "idle_ms", "unload_in_ms", "last_error",
                                            "n_ctx"]),
        "orch_budget_status": (N.BudgetStatus, ["budget", "used", "n_evictions"]),
        "orch_error": (N.Error, ["code", "msg"]),
    }

    @unittest.skipUnless(shutil.which("cc"), "no C compiler")
    def test_structs_match_the_header(self):
        lines = ['#include <orchestra.h>', '#include <stddef.h>', '#include <stdio.h>',
                 'int main(void) {']
        for name, (_, fields) in self.STRUCTS.items():
            t = "orch_error" if name == "orch_error" else f"struct {name}"
            lines.append(f'printf("{name} size %zu\\n", sizeof({t}));')
            for f in fields:
                lines.append(f'printf("{name} {f} %zu\\n", offsetof({t}, {f}));')
        lines.append("return 0; }")
        with tempfile.TemporaryDirectory() as d:
            src, exe = os.path.join(d, "probe.c"), os.path.join(d, "probe")
            pathlib.Path(src).write_text("\n".join(lines))
            subprocess.run(["cc", "-std=c11", "-I", str(REPO / "include"), src, "-o", exe],
                           check=True)
            out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
        c = {}
        for line in out.splitlines():
            s, f, v = line.split()
            c[(s, f)] = int(v)
        for name, (cls, fields) in self.STRUCTS.items():
            self.assertEqual(ctypes.sizeof(cls), c[(name, "size")], f"sizeof {name}")
            for f in fields:
                self.assertEqual(getattr(cls, f).offset, c[(name, f)], f"{name}.{f}")


class Basics(unittest.TestCase):
    def test_versions(self):
        self.assertRegex(orchestra.version(), r"^\d+\.\d+\.\d+$")
        self.assertTrue(orchestra.llama_version())
        devices = orchestra.llama_devices()
        self.assertIn("cpu", [kind for _, kind, _ in devices], devices)

    def test_bad_arguments_never_reach_c(self):
        with self.assertRaises(TypeError):
            Model(42)
        with self.assertRaises(TypeError):
            Model("x.gguf", n_ctx="big")
        with self.assertRaises(TypeError):
            Model("x.gguf", colour="red")
        m = Model("/nonexistent/x.gguf")
        with self.assertRaises(TypeError):
            m.generate("hi", max_tokens="10")
        with self.assertRaises(TypeError):
            m.generate("hi", temprature=0.5)
        with self.assertRaises(ValueError):
            m.generate("hi", top_p=2)
        with self.assertRaises(ValueError):
            m.generate("hi", temperature=float("nan"))
        with self.assertRaises(ValueError):
            m.generate("a\0b")
        with self.assertRaises(ValueError):
            m.generate("hi", stop=[""])
        with self.assertRaises(TypeError):
            m.generate(b"bytes")
        with self.assertRaises(ValueError):
            m.embed([])
        with self.assertRaises(ValueError):
            m.chat([{"role": "wizard", "content": "hi"}])
        m.close()

    def test_errors_are_the_library_codes(self):
        m = Model("/nonexistent/x.gguf", role="ghost")
        with self.assertRaises(orchestra.ENOENT) as cm:
            m.generate("hi")
        self.assertIsInstance(cm.exception, OrchestraError)
        self.assertEqual(cm.exception.code_name, "ORCH_ENOENT")
        self.assertIn("/nonexistent/x.gguf", str(cm.exception))
        self.assertIn("ghost", str(cm.exception))
        m.close()
        with self.assertRaises(orchestra.ENOENT):
            Orchestra("/nonexistent/roles.ini")
        with self.assertRaises(orchestra.ECONFIG) as cm:
            Orchestra.from_dict({"a": {"path": "x.gguf", "temprature": 1}})
        self.assertIn("temperature", str(cm.exception))
        with tempfile.NamedTemporaryFile(suffix=".gguf") as f:
            f.write(b"not a model at all" * 100)
            f.flush()
            with Model(f.name) as bad, self.assertRaises(orchestra.EFORMAT):
                bad.load()

    def test_closed_handles_refuse(self):
        m = Model("/nonexistent/x.gguf")
        m.close()
        with self.assertRaises(orchestra.ECLOSED):
            m.generate("hi")
        m.close()  # twice is fine


@need_model
class WithModel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = Model(MODEL, n_threads=1, role="story")
        cls.o = Orchestra.from_dict({
            "defaults": {"n_threads": 1},
            "story": {"path": MODEL, "alias": ["tiny", "stories"], "temperature": 0},
            "coder": {"fallback": "story", "temperature": 0, "max_tokens": 11},
            "embedding": {"fallback": "story", "embedding": True},
        })

    @classmethod
    def tearDownClass(cls):
        cls.o.close()
        cls.m.close()

    def test_generate_equals_the_c_library(self):
        r = self.m.generate("Once upon a time", max_tokens=11, temperature=0)
        self.assertEqual(r.text, GREEDY)
        self.assertEqual((r.finish, r.n_prompt, r.n_generated), ("length", 5, 11))
        if os.access(BIN, os.X_OK):
            cli = subprocess.run([BIN, "-q", "generate", "-m", MODEL, "-t", "1", "-p",
                                  "Once upon a time", "-n", "11", "--temp", "0"],
                                 check=True, capture_output=True, text=True).stdout
            self.assertEqual(r.text, cli.rstrip("\n"))
        # by role: the role's defaults (coder: greedy, 11 tokens), an alias
        self.assertEqual(self.o.generate("coder", "Once upon a time").text, GREEDY)
        self.assertEqual(self.o.generate("tiny", "Once upon a time", max_tokens=11).text, GREEDY)

    def test_stream(self):
        pieces = list(self.o.stream("story", "Once upon a time", max_tokens=11))
        self.assertGreater(len(pieces), 1)
        self.assertEqual("".join(pieces), GREEDY)
        # the generator returns the Result
        gen = self.m.stream("Once upon a time", max_tokens=11, temperature=0)
        text = ""
        try:
            while True:
                text += next(gen)
        except StopIteration as stop:
            self.assertEqual(stop.value.text, GREEDY)
            self.assertEqual(stop.value.finish, "length")
        self.assertEqual(text, GREEDY)

    def test_leaving_a_stream_cancels_it(self):
        s = self.o.stream("story", "Once upon a time", max_tokens=1500, temperature=0.9, seed=7)
        for i, _ in enumerate(s):
            if i == 2:
                break
        s.close()  # the generation stops and its lease returns
        st = {x["role"]: x for x in self.o.status()}
        self.assertEqual(st["story"]["leases"], 0)
        self.assertEqual(self.o.generate("coder", "Once upon a time").text, GREEDY)

    def test_stop_and_chat(self):
        r = self.m.generate("Once upon a time", max_tokens=40, temperature=0, stop=["girl"])
        self.assertEqual((r.text, r.finish), (", there was a little ", "stop"))
        c = self.o.chat("story", [{"role": "user", "content": "Hi"}], max_tokens=5)
        self.assertTrue(c.text)
        c2 = self.m.chat([("user", "Hi")], max_tokens=5, temperature=0)
        self.assertEqual(c.text, c2.text)

    def test_embed(self):
        v = self.o.embed(["a cat", "a dog"])
        self.assertEqual((len(v), len(v[0])), (2, 64))
        self.assertAlmostEqual(sum(x * x for x in v[0]), 1.0, places=4)
        one = self.m.embed("a cat")[0]
        self.assertGreaterEqual(cosine(one, v[0]), 0.9999)
        raw = self.m.embed("a cat", normalize=False)[0]
        self.assertGreater(abs(sum(x * x for x in raw) - 1.0), 1e-3)

    def test_preload_unload_status(self):
        self.o.unload_all()
        st = {x["role"]: x for x in self.o.status()}
        self.assertEqual(st["story"]["state"], "unloaded")
        self.assertEqual(st["coder"]["model_role"], "story")
        self.assertEqual(st["story"]["aliases"], ["tiny", "stories"])
        self.o.preload("coder")
        st = {x["role"]: x for x in self.o.status()}
        self.assertEqual(st["story"]["state"], "ready")
        self.assertEqual(st["story"]["n_parallel"], 4)
        self.o.unload("story")
        self.assertEqual({x["role"]: x for x in self.o.status()}["story"]["state"], "unloaded")
        with self.assertRaises(orchestra.ENOROLE) as cm:
            self.o.generate("wizard", "hi")
        self.assertIn("wizard", str(cm.exception))
        self.assertTrue(self.m.is_loaded or self.m.state == "unloaded")

    def test_many_threads_generate_at_once(self):
        prompts = ["Once upon a time", "The cat", "One day, Tom", "Lily and her mom",
                   "The sun", "A little dog", "Ben had a ball", "The bird"]
        alone = [self.m.generate(p, max_tokens=30, temperature=0).text for p in prompts]
        got = [None] * len(prompts)
        errors = []

        def work(i):
            try:
                # half by role, half on the model; half streaming (callbacks on many threads)
                if i % 2:
                    got[i] = "".join(self.o.stream("story", prompts[i], max_tokens=30))
                else:
                    got[i] = self.m.generate(prompts[i], max_tokens=30, temperature=0).text
            except BaseException as e:  # noqa: B902
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(got, alone)

    def test_calls_release_the_gil(self):
        # while one thread is inside a long call, this thread keeps running Python
        done = threading.Event()

        def work():
            self.m.generate("Once upon a time", max_tokens=400, temperature=0.8, seed=3)
            done.set()

        t = threading.Thread(target=work)
        t.start()
        spins = 0
        while not done.is_set() and spins < 10**9:
            spins += 1
            if spins % 1000 == 0 and not t.is_alive():
                break
        t.join()
        self.assertGreater(spins, 1000)


TEMPLATES = os.environ.get("ORCH_TEST_TEMPLATES") or str(REPO / ".deps/llama-common/templates")


@unittest.skipUnless(os.path.isdir(TEMPLATES), "no llama.cpp templates (scripts/setup.sh)")
class Agents(unittest.TestCase):
    """Tools, structured output and tool history through the model's own
    template (Qwen 2.5's, from the pinned source) on a synthetic model."""

    WEATHER = {"type": "function", "function": {
        "name": "get_weather", "parameters": {
            "type": "object", "required": ["city"],
            "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}}}}}

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        path = os.path.join(cls.dir.name, "qwen.gguf")
        tmpl = pathlib.Path(TEMPLATES, "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
        subprocess.run([BIN, "-q", "mkmodel", "--params", "100000", "--ctx", "4096",
                        "--chat-template", tmpl, "-o", path], check=True, capture_output=True)
        cls.o = Orchestra.from_dict({"defaults": {"n_threads": 1, "max_tokens": 300},
                                     "qwen": {"path": path}})

    @classmethod
    def tearDownClass(cls):
        cls.o.close()
        cls.dir.cleanup()

    def test_required_tool_call(self):
        ask = [{"role": "user", "content": "Weather in Paris?"}]
        for choice in ("required", "get_weather"):
            r = self.o.chat("qwen", ask, tools=[self.WEATHER], tool_choice=choice, seed=3)
            self.assertEqual(len(r.tool_calls), 1, r.text)
            self.assertEqual(r.tool_calls[0]["name"], "get_weather")
            self.assertIn(json.loads(r.tool_calls[0]["arguments"])["city"], ("Paris", "Rome"))
            self.assertTrue(r.tool_calls[0]["id"])
        # the call and its result in the history
        hist = ask + [{"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees"}]
        r = self.o.chat("qwen", hist, tools=[self.WEATHER], max_tokens=4)
        self.assertEqual(r.n_generated <= 4, True)

    def test_json_schema_and_grammar(self):
        schema = {"type": "object", "required": ["n"], "additionalProperties": False,
                  "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}}}
        r = self.o.chat("qwen", [{"role": "user", "content": "A number?"}], json_schema=schema,
                        seed=4)
        self.assertIn(json.loads(r.content)["n"], range(10))
        r = self.o.chat("qwen", [{"role": "user", "content": "Yes?"}], grammar='root ::= "yes" | "no"')
        self.assertIn(r.content, ("yes", "no"))
        with self.assertRaises(OrchestraError) as e:
            self.o.chat("qwen", [{"role": "user", "content": "x"}], json_schema="{not json")
        self.assertIn("JSON schema", str(e.exception))
        with self.assertRaises(ValueError):
            self.o.chat("qwen", [{"role": "user", "content": "x"}], reasoning="sometimes")


@need_model
class Interrupt(unittest.TestCase):
    """A KeyboardInterrupt on the main thread during a long generation
    cancels it: the call raises, and the model's lease is back."""

    @unittest.skipUnless(threading.current_thread() is threading.main_thread(), "needs the main thread")
    def test_keyboard_interrupt_cancels(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "synth.gguf")
            sp = N_synth_params()
            err = N.Error()
            rc = _synth(path.encode(), ctypes.byref(sp), ctypes.byref(err))
            self.assertEqual(rc, 0, err.msg)
            o = Orchestra.from_dict({"big": {"path": path, "n_threads": 1, "n_ctx": 4096}})
            # Python's own Ctrl-C handler, also where this process started
            # with SIGINT ignored (a shell's background job)
            old = signal.signal(signal.SIGINT, signal.default_int_handler)
            self.addCleanup(signal.signal, signal.SIGINT, old)
            interrupted = 0
            for seed in range(3):
                stop = threading.Event()

                def fire():
                    # once the generation holds its lease, interrupt the main thread
                    while not stop.is_set():
                        if any(s["leases"] for s in o.status()):
                            time.sleep(0.05)
                            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                            return
                        time.sleep(0.002)

                t = threading.Thread(target=fire)
                t.start()
                try:
                    o.generate("big", "hello", max_tokens=4000, temperature=1.0, seed=seed)
                except KeyboardInterrupt:
                    interrupted += 1
                finally:
                    stop.set()
                    t.join()
                self.assertEqual([s["leases"] for s in o.status()], [0])
                if interrupted:
                    break
            o.close()
            self.assertEqual(interrupted, 1)


class _SynthParams(ctypes.Structure):
    _fields_ = [("n_params", ctypes.c_uint64), ("seed", ctypes.c_uint32), ("f16", ctypes.c_bool),
                ("q4_0", ctypes.c_bool), ("n_ctx_train", ctypes.c_int32),
                ("chat_template", ctypes.c_char_p)]


def N_synth_params():
    f = N.lib.orch_synth_default_params
    f.restype = _SynthParams
    p = f()
    p.n_params = 20_000_000
    p.n_ctx_train = 4096
    return p


_synth = N.lib.orch_synth_model
_synth.restype = ctypes.c_int
_synth.argtypes = [ctypes.c_char_p, ctypes.POINTER(_SynthParams), ctypes.POINTER(N.Error)]

if __name__ == "__main__":
    unittest.main()
