"""orchestra.compat: the replaced module (CodeDreamer's codedreamer/models.py)
as its callers use it, with only the import changed: keyword calls,
properties, status()'s shape, preload lists, positional dataclasses,
DREAMER_* settings from the environment and .env, several threads."""

import dataclasses
import enum
import os
import pathlib
import sys
import tempfile
import threading
import typing
import unittest
from pathlib import Path
from unittest import mock

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

from orchestra import Model  # noqa: E402
from orchestra import compat  # noqa: E402
# the original's import line, with codedreamer.models changed to orchestra.compat
from orchestra.compat import (GenerationParams, ManagedModel, ModelConfig,  # noqa: E402
                              ModelInterface, ModelOrchestra, ModelRole, get_orchestra)

MODEL = os.environ.get("ORCH_TEST_MODEL") or str(REPO.parent / "shared/models/stories260K.gguf")
HAVE_MODEL = os.path.isfile(MODEL)
PROMPT = "Once upon a time"


def in_dir(d):
    """A context that runs in directory d (where a .env is read from)."""
    class Cd:
        def __enter__(self):
            self.old = os.getcwd()
            os.chdir(d)

        def __exit__(self, *exc):
            os.chdir(self.old)
    return Cd()


def reference(max_tokens, temperature, top_p, repeat_penalty):
    """What llama-cpp-python's completion gave the original: these
    parameters and its defaults top_k 40, min_p 0.05."""
    m = Model(MODEL, n_threads=1)
    try:
        return m.generate(PROMPT, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                          top_k=40, min_p=0.05, repeat_penalty=repeat_penalty).text
    finally:
        m.close()


class Shapes(unittest.TestCase):
    """The original's types, field order and defaults."""

    def test_model_role(self):
        self.assertTrue(issubclass(ModelRole, enum.Enum))
        self.assertEqual([r.name for r in ModelRole], ["REASONING", "CODER", "EMBEDDING"])
        self.assertEqual([r.value for r in ModelRole], [1, 2, 3])  # auto()

    def test_generation_params_positional(self):
        p = GenerationParams(64, 0.5, 0.8, 1.2, ["\n"])
        self.assertEqual((p.max_tokens, p.temperature, p.top_p, p.repeat_penalty, p.stop),
                         (64, 0.5, 0.8, 1.2, ["\n"]))
        d = GenerationParams()
        self.assertEqual(dataclasses.astuple(d), (1024, 0.7, 0.9, 1.1, []))
        self.assertIsNot(d.stop, GenerationParams().stop)

    def test_model_config(self):
        c = ModelConfig(Path("/models/qwen-7b.Q4_K_M.gguf"), ModelRole.CODER)
        self.assertEqual([f.name for f in dataclasses.fields(c)],
                         ["path", "role", "n_ctx", "n_gpu_layers", "n_threads", "embedding"])
        self.assertEqual((c.n_ctx, c.n_gpu_layers, c.n_threads, c.embedding), (4096, 99, 4, False))
        self.assertEqual(c.name, "qwen-7b.Q4_K_M")
        self.assertEqual(ModelConfig(None, ModelRole.EMBEDDING).name, "embedding_model")

    def test_protocol(self):
        self.assertIn(typing.Protocol, ModelInterface.__mro__)
        for name in ("generate", "embed", "unload"):
            self.assertTrue(callable(getattr(ManagedModel, name)))


class SettingsFromEnv(unittest.TestCase):
    """DREAMER_* as pydantic-settings read them: any case, .env in the
    working directory, the environment first."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def settings(self, env, dotenv=None):
        if dotenv is not None:
            Path(self.dir.name, ".env").write_text(dotenv)
        with mock.patch.dict(os.environ, env, clear=True), in_dir(self.dir.name):
            return compat.Settings()

    def test_defaults(self):
        s = self.settings({})
        self.assertEqual(s.model_path, Path("/models/qwen2.5-14b-instruct-q4_k_m.gguf"))
        self.assertEqual((s.coder_model_path, s.embed_model_path), (None, None))
        self.assertEqual((s.n_ctx, s.n_gpu_layers, s.n_threads), (4096, 99, 4))

    def test_any_case_and_paths(self):
        s = self.settings({"dreamer_model_path": MODEL, "Dreamer_N_Ctx": "1024",
                           "DREAMER_CODER_MODEL_PATH": "/models/", "DREAMER_EMBED_MODEL_PATH": ""})
        self.assertEqual(s.model_path, Path(MODEL).resolve() if HAVE_MODEL else Path(MODEL))
        self.assertEqual(s.n_ctx, 1024)
        # a folder or an empty value is no model (the original's validator)
        self.assertEqual((s.coder_model_path, s.embed_model_path), (None, None))
        s = self.settings({"DREAMER_CODER_MODEL_PATH": "/not/there/coder.gguf"})
        self.assertEqual(s.coder_model_path, Path("/not/there/coder.gguf"))

    def test_dotenv_and_precedence(self):
        dotenv = ("# settings\nDREAMER_N_THREADS=2\nexport DREAMER_N_GPU_LAYERS = 0\n"
                  "dreamer_coder_model_path='/m/c.gguf'\nDREAMER_N_CTX=2048 # small\n"
                  "OTHER=1\n")
        s = self.settings({}, dotenv)
        self.assertEqual((s.n_threads, s.n_gpu_layers, s.n_ctx), (2, 0, 2048))
        self.assertEqual(s.coder_model_path, Path("/m/c.gguf"))
        s = self.settings({"DREAMER_N_THREADS": "3"}, dotenv)
        self.assertEqual(s.n_threads, 3)

    def test_bad_values(self):
        for env, word in (({"DREAMER_N_CTX": "lots"}, "DREAMER_N_CTX"),
                          ({"DREAMER_N_CTX": "256"}, "minimum of 512"),
                          ({"DREAMER_N_THREADS": "0"}, "DREAMER_N_THREADS"),
                          ({"DREAMER_N_GPU_LAYERS": "-1"}, "DREAMER_N_GPU_LAYERS")):
            with self.assertRaises(ValueError) as cm:
                self.settings(env)
            self.assertIn(word, str(cm.exception))

    def test_unusable_model_path(self):
        with mock.patch.object(compat, "settings", self.settings({"DREAMER_MODEL_PATH": "x.bin"})):
            with self.assertRaises(ValueError) as cm:
                ModelOrchestra()
            self.assertIn("DREAMER_MODEL_PATH", str(cm.exception))


@unittest.skipUnless(HAVE_MODEL, f"test model not found at {MODEL}")
class CallersProgram(unittest.TestCase):
    """The original's callers (conductor.py, server.py, reflection.py,
    daemon.py): get_orchestra() from the settings, keyword calls, the
    _coder check, status() for a health page, unload_all at shutdown."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        Path(cls.dir.name, ".env").write_text(
            f"DREAMER_MODEL_PATH={MODEL}\nDREAMER_CODER_MODEL_PATH=/nonexistent/coder.gguf\n"
            "DREAMER_N_GPU_LAYERS=0\nDREAMER_N_CTX=2048\n")
        with mock.patch.dict(os.environ, {"DREAMER_N_THREADS": "1"}), in_dir(cls.dir.name):
            compat.settings = compat.Settings()
        compat._orchestra = None
        cls.o = get_orchestra()

    @classmethod
    def tearDownClass(cls):
        cls.o.close()
        compat._orchestra = None
        compat.settings = compat.Settings()
        cls.dir.cleanup()

    def test_singleton_and_settings(self):
        self.assertIs(get_orchestra(), self.o)
        self.assertEqual(self.o.reasoning.config.n_ctx, 2048)
        self.assertEqual(self.o.reasoning.config.n_threads, 1)
        self.assertEqual(self.o.reasoning.config.name, Path(MODEL).stem)

    def test_keyword_calls(self):
        # conductor.py: reason(prompt, temperature=0.1, max_tokens=20); 48
        # greedy tokens are enough for each role's repeat penalty to show
        want = reference(48, 0.0, 0.9, 1.1)
        self.assertNotEqual(want, reference(48, 0.0, 0.9, 1.0))
        self.assertEqual(self.o.reason(PROMPT, temperature=0.0, max_tokens=48), want)
        self.assertEqual(self.o.reason(PROMPT, 0.0, 48), want)
        # code(): the coder's file is missing, so the reasoning model, at
        # the code defaults (top_p 0.95, repeat 1.15)
        self.assertIsNone(self.o._coder)
        self.assertIs(self.o.coder, self.o.reasoning)
        want = reference(48, 0.0, 0.95, 1.15)
        self.assertNotEqual(want, reference(48, 0.0, 0.95, 1.1))
        self.assertEqual(self.o.code(PROMPT, temperature=0.0, max_tokens=48), want)
        self.assertEqual(self.o.dream(PROMPT, temperature=0.0, max_tokens=48), want)
        self.assertIsInstance(self.o.dream(PROMPT, max_tokens=8), str)
        self.assertIsInstance(self.o.code(PROMPT, temperature=0.4), str)  # up to 2,048 tokens

    def test_status_preload_unload(self):
        self.o.unload_all()
        self.assertEqual(self.o.status(), {"reasoning": False, "coder": False, "embed": False})
        self.o.preload([ModelRole.CODER])  # no coder of its own: nothing to load
        self.assertEqual(self.o.status(), {"reasoning": False, "coder": False, "embed": False})
        self.o.preload()
        self.assertEqual(self.o.status(), {"reasoning": True, "coder": False, "embed": False})
        self.assertTrue(self.o.reasoning.is_loaded)
        self.o.unload_all()
        self.assertFalse(self.o.reasoning.is_loaded)
        self.o.reason(PROMPT, max_tokens=2)  # loads lazily
        self.assertTrue(self.o.status()["reasoning"])

    def test_managed_unloads(self):
        with self.o.reasoning.managed() as m:
            self.assertIs(m, self.o.reasoning)
            self.assertTrue(m.is_loaded)
            self.assertIsInstance(m.generate(PROMPT, GenerationParams(max_tokens=4)), str)
        self.assertFalse(self.o.reasoning.is_loaded)

    def test_embeddings(self):
        # the original raised here (its reasoning model had no embeddings);
        # the reasoning model's file embeds instead, not normalized
        v = self.o.embed_text("a cat")
        m = Model(MODEL, n_threads=1)
        want = m.embed(["a cat"], normalize=False)[0]
        m.close()
        self.assertEqual(len(v), 64)
        for a, b in zip(v, want):
            self.assertAlmostEqual(a, b, places=4)
        self.assertNotAlmostEqual(sum(x * x for x in v), 1.0, places=2)
        # the ManagedModel itself keeps the original's rule
        self.assertIs(self.o.embed, self.o.reasoning)
        with self.assertRaises(RuntimeError) as cm:
            self.o.embed.embed("a cat")
        self.assertIn("REASONING model not configured for embeddings", str(cm.exception))

    def test_threads(self):
        want = self.o.reason(PROMPT, temperature=0.0, max_tokens=24)
        out = [None] * 6
        errs = []

        def run(i):
            try:
                out[i] = (self.o.reason if i % 2 else self.o.code)(
                    PROMPT, temperature=0.0, max_tokens=24)
            except Exception as e:  # noqa: BLE001 - reported below
                errs.append(e)
        ts = [threading.Thread(target=run, args=(i,)) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errs, [])
        self.assertEqual([out[i] for i in range(1, 6, 2)], [want] * 3)
        self.assertEqual(len({out[i] for i in range(0, 6, 2)}), 1)


@unittest.skipUnless(HAVE_MODEL, f"test model not found at {MODEL}")
class DedicatedRoles(unittest.TestCase):
    def test_paths_given(self):
        with mock.patch.object(compat, "settings", compat.Settings(n_threads=1, n_gpu_layers=0)):
            o = ModelOrchestra(reasoning_path=Path(MODEL), coder_path=Path(MODEL),
                               embed_path=MODEL)
        try:
            self.assertIsNotNone(o._coder)
            self.assertIs(o.coder, o._coder)
            self.assertEqual((o._coder.config.n_ctx, o._embed.config.n_ctx), (4096, 512))
            self.assertEqual((o._embed.config.n_gpu_layers, o._embed.config.embedding), (0, True))
            self.assertEqual(o.status(), {"reasoning": False, "coder": False, "embed": False})
            o.preload([ModelRole.CODER, ModelRole.EMBEDDING])
            self.assertEqual(o.status(), {"reasoning": True, "coder": True, "embed": True})
            # one file, loaded once for the three roles (the original loaded it thrice)
            st = o._orch.status()
            self.assertEqual({s["model_role"] for s in st}, {"reasoning"})
            self.assertEqual(len(o.embed.embed("a dog")), 64)
            self.assertIsInstance(o.code("def f(", max_tokens=4), str)
        finally:
            o.close()

    def test_missing_reasoning_file(self):
        with mock.patch.object(compat, "settings", compat.Settings(n_threads=1)):
            o = ModelOrchestra(reasoning_path=Path("/nonexistent/big.gguf"))
        try:
            self.assertEqual(o.status()["reasoning"], False)
            with self.assertRaises(ValueError) as cm:  # llama-cpp-python's type
                o.reason("x")
            self.assertIn("/nonexistent/big.gguf", str(cm.exception))
        finally:
            o.close()

    def test_managed_model_alone(self):
        mm = ManagedModel(ModelConfig(MODEL, ModelRole.EMBEDDING, 512, 0, 1, True))
        try:
            self.assertFalse(mm.is_loaded)
            with mm.managed() as m:
                self.assertTrue(m.is_loaded)
                self.assertEqual(len(m.embed("hi")), 64)
                self.assertIsInstance(m.generate(PROMPT, GenerationParams(max_tokens=4)), str)
            self.assertFalse(mm.is_loaded)
            self.assertIsInstance(mm.generate(PROMPT, GenerationParams(8, 0.0)), str)
            self.assertTrue(mm.is_loaded)
        finally:
            mm.close()
        plain = ManagedModel(ModelConfig(MODEL, ModelRole.CODER, n_threads=1))
        try:
            with self.assertRaises(RuntimeError):
                plain.embed("x")
        finally:
            plain.close()


if __name__ == "__main__":
    unittest.main()
