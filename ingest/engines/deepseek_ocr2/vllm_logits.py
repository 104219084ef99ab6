"""The n-gram ban as one vLLM batch-level logits processor (imported only where vLLM is installed).

A drop-in for vLLM's `NGramPerReqLogitsProcessor`: it reads the same per-request arguments (`ngram_size`,
`window_size`, `whitelist_token_ids`), so requests built for the recipe work unchanged, including through
`vllm serve --logits-processors docground.ingest.engines.deepseek_ocr2.vllm_logits:NoRepeatNGramProcessor`.
Per step it costs an `NGramGuard` update per request and one scatter for the whole batch.
"""

from __future__ import annotations

import torch
from vllm.sampling_params import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from .ngram import NGramGuard

DEFAULT_WINDOW = 100  # vLLM's default when a request names no window


def guard_for(params: SamplingParams) -> NGramGuard | None:
    args = params.extra_args or {}
    size = args.get("ngram_size")
    if size is None:
        return None
    return NGramGuard(size, args.get("window_size", DEFAULT_WINDOW), args.get("whitelist_token_ids") or ())


class NoRepeatNGramProcessor(LogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.device = device
        self.guards: dict[int, tuple[list[int], NGramGuard]] = {}

    @classmethod
    def validate_params(cls, params: SamplingParams) -> None:
        args = params.extra_args or {}
        if args.get("ngram_size") is None:
            return
        for key in ("ngram_size", "window_size"):
            value = args.get(key, DEFAULT_WINDOW)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{key}` has to be a strictly positive integer, got {value!r}")

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token greedy decoding picks

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        def new_state(params, _prompt_ids, output_ids):
            guard = guard_for(params)
            return None if guard is None else (output_ids, guard)

        process_dict_updates(self.guards, batch_update, new_state)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        rows: list[int] = []
        cols: list[int] = []
        for row, (output_ids, guard) in self.guards.items():
            if output_ids and output_ids[-1] < 0:
                continue  # an async-scheduling placeholder not yet filled in
            banned = guard.banned(output_ids)
            rows += [row] * len(banned)
            cols += banned
        if rows:
            index = torch.tensor([rows, cols], dtype=torch.long).to(logits.device, non_blocking=True)
            logits[index[0], index[1]] = float("-inf")
        return logits
