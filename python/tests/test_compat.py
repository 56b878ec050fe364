"""orchestra.compat: the replaced system's names, settings from DREAMER_*,
its fallbacks, and results equal to the package's own."""

import os
import pathlib
import sys
import unittest
from unittest import mock

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

from orchestra import Model  # noqa: E402
from orchestra import compat  # noqa: E402
from orchestra.compat import (GenerationParams, ManagedModel, ModelConfig,  # noqa: E402
                              ModelOrchestra, ModelRole)

MODEL = os.environ.get("ORCH_TEST_MODEL") or str(REPO.parent / "shared/models/stories260K.gguf")
HAVE_MODEL = os.path.isfile(MODEL)


class Settings(unittest.TestCase):
    def test_reasoning_is_required(self):
        with mock.patch.dict(os.environ, {}, clear=True):
            with self.assertRaises(ValueError) as cm:
                compat.configs_from_env()
            self.assertIn("DREAMER_REASONING_MODEL", str(cm.exception))

    def test_fallbacks_when_unset_or_missing(self):
        env = {"DREAMER_REASONING_MODEL": MODEL, "DREAMER_CODER_MODEL": "/nonexistent/coder.gguf",
               "DREAMER_N_CTX": "1024", "DREAMER_N_THREADS": "1", "DREAMER_N_GPU_LAYERS": "0"}
        with mock.patch.dict(os.environ, env, clear=True):
            cfgs = compat.configs_from_env()
        self.assertEqual(set(cfgs), {ModelRole.REASONING})  # coder missing, embedding unset
        self.assertEqual((cfgs[ModelRole.REASONING].n_ctx, cfgs[ModelRole.REASONING].n_threads),
                         (1024, 1))
        env["DREAMER_EMBEDDING_MODEL_PATH"] = MODEL  # the _PATH spelling too
        with mock.patch.dict(os.environ, env, clear=True):
            cfgs = compat.configs_from_env()
        self.assertEqual(cfgs[ModelRole.EMBEDDING].path, MODEL)
        self.assertTrue(cfgs[ModelRole.EMBEDDING].embedding)
        with mock.patch.dict(os.environ, {"DREAMER_REASONING_MODEL": MODEL, "DREAMER_N_CTX": "lots"},
                             clear=True):
            with self.assertRaises(ValueError):
                compat.configs_from_env()


@unittest.skipUnless(HAVE_MODEL, f"test model not found at {MODEL}")
class Roles(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        env = {"DREAMER_REASONING_MODEL": MODEL, "DREAMER_CODER_MODEL": "/nonexistent/coder.gguf",
               "DREAMER_N_THREADS": "1", "DREAMER_N_GPU_LAYERS": "0", "DREAMER_N_CTX": "2048"}
        with mock.patch.dict(os.environ, env):
            compat._instance = None
            cls.o = compat.get_orchestra()
            cls.again = compat.get_orchestra()

    @classmethod
    def tearDownClass(cls):
        cls.o.close()
        compat._instance = None

    def test_one_instance(self):
        self.assertIs(self.o, self.again)

    def test_reason_code_dream(self):
        greedy = GenerationParams(max_tokens=11, temperature=0)
        ref = Model(MODEL, n_threads=1)
        want = ref.generate("Once upon a time", max_tokens=11, temperature=0, top_p=0.9, top_k=40,
                            repeat_penalty=1.1).text
        ref.close()
        self.assertEqual(self.o.reason("Once upon a time", greedy), want)
        # the coder's file is missing: it is the reasoning model
        self.assertEqual(self.o.code("Once upon a time", greedy), want)
        self.assertIsInstance(self.o.dream("Once upon a time", GenerationParams(max_tokens=8)), str)
        st = self.o.status()
        self.assertEqual(st["coder"]["model_role"], "reasoning")
        self.assertEqual(st["dream"]["model_role"], "reasoning")
        self.assertTrue(st["reasoning"]["loaded"])

    def test_embed_text(self):
        v = self.o.embed_text("a cat")
        self.assertEqual(len(v), 64)
        self.assertAlmostEqual(sum(x * x for x in v), 1.0, places=4)

    def test_managed_model_and_unload_all(self):
        mm = self.o.models[ModelRole.CODER]
        self.assertIsInstance(mm, ManagedModel)
        with mm.managed() as m:
            self.assertTrue(m.is_loaded)
            self.assertIsInstance(m.generate("def f(", GenerationParams(max_tokens=4)), str)
            self.assertEqual(len(m.embed("x")), 64)
        self.o.unload_all()
        self.assertFalse(mm.is_loaded)
        self.o.preload(ModelRole.REASONING)
        self.assertTrue(self.o.models[ModelRole.REASONING].is_loaded)
        mm.unload()
        self.assertFalse(self.o.models[ModelRole.REASONING].is_loaded)

    def test_explicit_configs(self):
        o = ModelOrchestra({ModelRole.REASONING: ModelConfig(MODEL, n_ctx=512, n_gpu_layers=0,
                                                            n_threads=1)})
        self.assertEqual(o.status()["embedding"]["model_role"], "reasoning")
        o.close()
        with self.assertRaises(ValueError):
            ModelOrchestra({ModelRole.CODER: ModelConfig(MODEL)})


if __name__ == "__main__":
    unittest.main()
