"""DeepSeek-OCR-2 through transformers' native `DeepseekOcr2ForConditionalGeneration`, from a local directory.

The slow path (eager attention and MoE, ~15 tokens/s per page on an H100 at batch 1), for machines without
vLLM and for tests: pages go through `generate` in batches, left-padded, greedy, with the same windowed
n-gram ban as the vLLM backends.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from pathlib import Path

from transformers import LogitsProcessor

from docground.errors import OcrUnavailable

from .ngram import NGramGuard
from .prompt import Sampling, model_prompt
from .schema import FINISH_LENGTH, FINISH_STOP, Generation, PageRequest


class TransformersBackend:
    name = "transformers"

    def __init__(self, model, processor, batch_size: int = 8):
        self.model = model
        self.processor = processor
        self.batch_size = batch_size
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # generation appends on the right

    @classmethod
    def load(cls, model_dir: str | Path, device: str | None = None, batch_size: int = 8) -> TransformersBackend:
        import torch
        from transformers import AutoProcessor, DeepseekOcr2ForConditionalGeneration

        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise OcrUnavailable(f"the transformers OCR backend needs a local model directory with config.json; "
                                 f"{str(path)!r} is not one (no model hub is reachable)")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        processor = AutoProcessor.from_pretrained(path)
        model = DeepseekOcr2ForConditionalGeneration.from_pretrained(path, dtype=dtype).to(device).eval()
        return cls(model, processor, batch_size)

    def generate(self, requests: Iterable[PageRequest]) -> list[Generation]:
        out: list[Generation] = []
        for sampling, group in groupby(requests, key=lambda r: r.sampling):
            group = list(group)
            for i in range(0, len(group), self.batch_size):
                out += self._batch(group[i:i + self.batch_size], sampling)
        return out

    def _batch(self, requests: list[PageRequest], sampling: Sampling) -> list[Generation]:
        import torch
        from transformers import LogitsProcessorList

        inputs = self.processor(images=[r.image for r in requests], text=[model_prompt(r.task) for r in requests],
                                return_tensors="pt", padding=True)
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)  # casts the pixel values only
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        kwargs = {"min_new_tokens": sampling.max_tokens} if sampling.ignore_eos else {}
        with torch.inference_mode():
            ids = self.model.generate(**inputs, do_sample=False, max_new_tokens=sampling.max_tokens,
                                      logits_processor=LogitsProcessorList([NGramBan(sampling)]),
                                      eos_token_id=eos, pad_token_id=pad, **kwargs)
        return [self._generation(row) for row in ids[:, inputs["input_ids"].shape[1]:].tolist()]

    def _generation(self, new_ids: list[int]) -> Generation:
        eos = self.tokenizer.eos_token_id
        if eos in new_ids:
            kept = new_ids[:new_ids.index(eos)]
            return Generation(text=self.tokenizer.decode(kept, skip_special_tokens=False),
                              finish_reason=FINISH_STOP, tokens=len(kept) + 1)
        return Generation(text=self.tokenizer.decode(new_ids, skip_special_tokens=False),
                          finish_reason=FINISH_LENGTH, tokens=len(new_ids))

    def close(self) -> None:
        pass


class NGramBan(LogitsProcessor):
    """The windowed n-gram ban as a transformers logits processor (one `NGramGuard` per row of the batch)."""

    def __init__(self, sampling: Sampling):
        self.sampling = sampling
        self.prompt_length: int | None = None
        self.outputs: list[list[int]] = []
        self.guards: list[NGramGuard] = []

    def __call__(self, input_ids, scores):
        if self.prompt_length is None:
            s = self.sampling
            self.prompt_length = input_ids.shape[1]
            self.outputs = [[] for _ in range(input_ids.shape[0])]
            self.guards = [NGramGuard(s.ngram_size, s.ngram_window, s.exempt_token_ids) for _ in self.outputs]
        else:
            for out, token in zip(self.outputs, input_ids[:, -1].tolist(), strict=True):
                out.append(token)
        rows, cols = [], []
        for row, (out, guard) in enumerate(zip(self.outputs, self.guards, strict=True)):
            banned = guard.banned(out)
            rows += [row] * len(banned)
            cols += banned
        if rows:
            scores[rows, cols] = float("-inf")
        return scores
