"""vLLM pieces: they run only where vLLM is installed (the GPU image), and skip cleanly elsewhere.

The GPU benchmark (bench/gpu_ocr.py) exercises the whole vLLM backend on an H100; here the logits processor
is checked against the guard it wraps, and the backend end to end when a GPU and a model directory are given
(DOCGROUND_TEST_VLLM_MODEL, e.g. the dummy-weight dir of ../shared/tools/vllm-device/make_model_dir.py).
"""

from __future__ import annotations

import os

import pytest

vllm = pytest.importorskip("vllm")

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from vllm import SamplingParams  # noqa: E402
from vllm.v1.sample.logits_processor import BatchUpdate  # noqa: E402

from docground.ingest.engines.deepseek_ocr2.ngram import NGramGuard  # noqa: E402
from docground.ingest.engines.deepseek_ocr2.prompt import GROUNDING, Sampling  # noqa: E402
from docground.ingest.engines.deepseek_ocr2.schema import PageRequest  # noqa: E402
from docground.ingest.engines.deepseek_ocr2.vllm_logits import NoRepeatNGramProcessor  # noqa: E402


def test_the_batch_processor_bans_what_the_guard_bans():
    proc = NoRepeatNGramProcessor(None, torch.device("cpu"), False)
    args = {"ngram_size": 3, "window_size": 20, "whitelist_token_ids": [7]}
    looping, plain = [1, 2, 3, 1, 2], [4, 5, 6]
    proc.update_state(BatchUpdate(batch_size=3, removed=[], moved=[], added=[
        (0, SamplingParams(extra_args=args), None, looping),
        (1, SamplingParams(), None, plain),  # no ngram_size: left alone
        (2, SamplingParams(extra_args=args), None, [7, 7, 7]),
    ]))
    logits = proc.apply(torch.zeros(3, 10))
    assert torch.isinf(logits[0]).nonzero().flatten().tolist() == NGramGuard(3, 20).banned(looping) == [3]
    assert not torch.isinf(logits[1:]).any()  # row 2 would repeat 7, which is exempt


@pytest.mark.skipif(not torch.cuda.is_available() or not os.environ.get("DOCGROUND_TEST_VLLM_MODEL"),
                    reason="needs a GPU and DOCGROUND_TEST_VLLM_MODEL")
def test_backend_generates_every_page():
    from docground.ingest.engines.deepseek_ocr2.backend_vllm import VllmBackend

    backend = VllmBackend(os.environ["DOCGROUND_TEST_VLLM_MODEL"], load_format="dummy", preprocess_workers=2,
                          max_num_seqs=8, gpu_memory_utilization=0.5)
    try:
        requests = [PageRequest(Image.new("RGB", (800, 1100), "white"), GROUNDING,
                                Sampling(max_tokens=8, ignore_eos=True))
                    for _ in range(4)]
        gens = backend.generate(requests)
    finally:
        backend.close()
    assert [g.tokens for g in gens] == [8, 8, 8, 8] and all(g.finish_reason == "length" for g in gens)
