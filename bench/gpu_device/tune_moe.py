"""Tune vLLM's fused-MoE Triton kernel for DeepSeek-OCR-2's expert shape on this GPU and write the config file
vLLM looks for (`E=64,N=896,device_name=<GPU>.json`; vLLM 0.26 ships none for this shape on H100/H200).

vLLM's own tuner (benchmarks/kernels/benchmark_moe.py) is in its source tree, not in the wheel, and needs ray;
this does the same measurement in one process: for each batch size M (tokens in one forward step), every
candidate config runs vLLM's `fused_experts` (the kernel the model's MoE layers call, unquantized bf16) on
random routing, ten calls captured in a CUDA graph and replayed, and the fastest config is kept. Candidates per
M: vLLM's default for that M and the configs vLLM ships for neighbouring shapes (E 62/64/72 on H100/H200, E=64
N=896 on H20) at that M; then, batch sizes in order of what the engine runs most (decode at 128-1024 pages in
flight, prefill chunks), a hill-climb one step at a time in vLLM's tuning grid from the best, until --budget
seconds are spent. A batch size left untuned falls back, by vLLM's nearest-key rule, to its neighbour's config.

On the GPU machine (the vLLM bundle on PYTHONPATH):
    python3 bench/gpu_device/tune_moe.py --out ingest/engines/deepseek_ocr2/moe_configs --budget 180 \
        --copy $OUT/moe_config.json --report $OUT/tune_report.json

The device tool brings back no file whose name holds ',' or '=', and a folder the command writes in the checkout
does not outlive the call: --copy writes the same table under a plain name in $OUT; copy that back here as
`E=64,N=896,device_name=<GPU>.json`. Measured on one H200 (2026-12-02, 185 s): the tuned table is 0-26% faster
than vLLM's default per MoE call (none at M=256-1024, the decode batches of a full engine), about 1% end to end
on the language model alone (text-only prompts, 256 in flight: 24.03 against 23.81 pages/s).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import time

# DeepSeek-OCR-2's language model: 64 routed experts, 6 per token, hidden 1280, expert intermediate 896
E, TOPK, HIDDEN, INTER = 64, 6, 1280, 896
# most important first: decode batches of a full engine, then prefill chunks, then the draining tail
BATCHES = [256, 512, 384, 1024, 128, 768, 192, 2048, 4096, 8192, 1536, 3072, 16384, 96, 64, 48, 32, 24, 16, 8, 4,
           2, 1]
KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages")


def shipped_configs() -> list[dict[int, dict]]:
    """vLLM's tuned tables for neighbouring shapes: unquantized, E 62/64/72 on H100/H200, and E=64 N=896 on H20."""
    import vllm.model_executor.layers.fused_moe as fm

    folder = os.path.join(os.path.dirname(fm.__file__), "configs")
    tables = []
    for path in glob.glob(os.path.join(folder, "E=*.json")):
        name = os.path.basename(path)
        if "dtype" in name or "block_shape" in name:
            continue
        shape = re.match(r"E=(\d+),N=(\d+),device_name=(.+)\.json$", name)
        if not shape:
            continue
        e, n, device = int(shape[1]), int(shape[2]), shape[3]
        if (e in (62, 64, 72) and device in ("NVIDIA_H100_80GB_HBM3", "NVIDIA_H200")) or (e == 64 and n == INTER):
            table = json.load(open(path))
            table.pop("triton_version", None)
            tables.append({int(k): v for k, v in table.items()})
    return tables


def nearest(table: dict[int, dict], m: int) -> dict:
    return table[min(table, key=lambda k: abs(k - m))]


def key(config: dict) -> tuple:
    return tuple(config.get(k) for k in KEYS)


def as_config(values: tuple) -> dict:
    return dict(zip(KEYS, values, strict=True))


STEPS = {"BLOCK_SIZE_M": [16, 32, 64, 128], "BLOCK_SIZE_N": [32, 64, 128, 256], "BLOCK_SIZE_K": [64, 128, 256],
         "GROUP_SIZE_M": [1, 16, 32, 64], "num_warps": [4, 8], "num_stages": [2, 3, 4, 5]}


def neighbours(config: dict) -> list[dict]:
    """Configs one step away from `config` in one parameter (vLLM's tuning grid's values)."""
    out = []
    for k, values in STEPS.items():
        i = values.index(config[k]) if config[k] in values else None
        for j in ([i - 1, i + 1] if i is not None else range(len(values))):
            if 0 <= j < len(values):
                out.append(config | {k: values[j]})
    return out


def fits(config: dict) -> bool:
    """Shared memory on Hopper (228 KiB a block): A and B tiles, bf16, per pipeline stage."""
    smem = config["num_stages"] * 2 * config["BLOCK_SIZE_K"] * (config["BLOCK_SIZE_M"] + config["BLOCK_SIZE_N"])
    return smem <= 220 * 1024


class Bench:
    def __init__(self):
        import torch
        from vllm.model_executor.layers.fused_moe import fused_experts, override_config
        from vllm.model_executor.layers.fused_moe.router.fused_topk_router import fused_topk

        self.torch, self.fused_experts, self.override_config, self.fused_topk = (torch, fused_experts,
                                                                                 override_config, fused_topk)
        torch.manual_seed(0)
        self.w1 = torch.randn(E, 2 * INTER, HIDDEN, dtype=torch.bfloat16, device="cuda") / 32
        self.w2 = torch.randn(E, HIDDEN, INTER, dtype=torch.bfloat16, device="cuda") / 32
        self.graphs = True  # ten calls captured in a CUDA graph and replayed (as the engine runs decode)

    def time_us(self, config: dict, m: int) -> float:
        """Microseconds per fused_experts call at batch size m with this config (CUDA graph of 10 calls)."""
        torch = self.torch
        x = torch.randn(m, HIDDEN, dtype=torch.bfloat16, device="cuda")
        gating = torch.randn(m, E, dtype=torch.float32, device="cuda")
        full = {**config, "SPLIT_K": 1}

        def run():
            with self.override_config(full):
                weights, ids, _ = self.fused_topk(x, gating, TOPK, renormalize=False)
                return self.fused_experts(x, self.w1, self.w2, weights, ids)

        run()  # compiles this config's kernels (an out-of-resources tile raises here)
        torch.cuda.synchronize()
        replays = 20 if m <= 1024 else 6
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        if self.graphs:
            try:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    for _ in range(10):
                        run()
                torch.cuda.synchronize()
            except Exception as exc:  # not capturable here: time eager calls from now on (launch cost included)
                self.graphs = False
                print(f"CUDA graph capture failed ({type(exc).__name__}: {exc}); timing eager calls", flush=True)
                torch.cuda.synchronize()
        if self.graphs:
            for _ in range(3):
                graph.replay()
            start.record()
            for _ in range(replays):
                graph.replay()
            end.record()
            torch.cuda.synchronize()
            del graph
        else:
            for _ in range(3):
                run()
            start.record()
            for _ in range(replays * 10):
                run()
            end.record()
            torch.cuda.synchronize()
        return start.elapsed_time(end) * 1000 / (replays * 10)


def tune(budget: float, log) -> tuple[dict[int, dict], dict[int, dict]]:
    from vllm.model_executor.layers.fused_moe.fused_moe import get_default_config

    deadline = time.monotonic() + budget
    bench = Bench()
    tables = shipped_configs()
    best: dict[int, dict] = {}
    report: dict[int, dict] = {}
    tried: dict[int, dict[tuple, float]] = {m: {} for m in BATCHES}

    def measure(m: int, config: dict) -> None:
        k = key(config)
        if k in tried[m] or not fits(config) or time.monotonic() > deadline:
            return
        try:
            tried[m][k] = bench.time_us(config, m)
        except Exception as exc:  # out of resources for this tile: not a candidate
            tried[m][k] = float("inf")
            log(f"  M={m} {config}: {type(exc).__name__}")

    for m in BATCHES:  # round 1: vLLM's default and the shipped neighbours
        default = {k: v for k, v in get_default_config(m, E, INTER, HIDDEN, TOPK, None).items() if k in KEYS}
        measure(m, default)
        for table in tables:
            measure(m, {k: v for k, v in nearest(table, m).items() if k in KEYS})
        if time.monotonic() > deadline:
            break
        fastest = min(tried[m], key=tried[m].get)
        best[m] = as_config(fastest)
        report[m] = {"default_us": tried[m].get(key(default)), "best_us": tried[m][fastest], "tried": len(tried[m])}
        log(f"M={m}: default {report[m]['default_us']:.1f} us, best of {len(tried[m])} {tried[m][fastest]:.1f} us")
    for m in list(best):  # round 2: climb from each batch size's best, in priority order, while time lasts
        while time.monotonic() < deadline:
            before = min(tried[m], key=tried[m].get)
            for config in neighbours(as_config(before)):
                measure(m, config)
            if min(tried[m], key=tried[m].get) == before:
                break
        fastest = min(tried[m], key=tried[m].get)
        best[m] = as_config(fastest)
        report[m].update(best_us=tried[m][fastest], tried=len(tried[m]))
        log(f"M={m} refined: best of {len(tried[m])} {tried[m][fastest]:.1f} us "
            f"({report[m]['default_us'] / tried[m][fastest]:.2f}x the default)")
        if time.monotonic() > deadline:
            break
    return best, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for the config file (VLLM_TUNED_CONFIG_FOLDER)")
    ap.add_argument("--budget", type=float, default=180, help="seconds of tuning")
    ap.add_argument("--report", help="also write the per-batch timings here (JSON)")
    ap.add_argument("--copy", help="also write the config table to this path (a name the device tool returns)")
    args = ap.parse_args()
    import triton
    from vllm.model_executor.layers.fused_moe.fused_moe import get_config_file_name

    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {message}", flush=True)

    from vllm.config import VllmConfig, set_current_vllm_config

    with set_current_vllm_config(VllmConfig()):  # as vLLM's own kernel benchmarks run its ops
        best, report = tune(args.budget, log)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, get_config_file_name(E, INTER, None))
    table = {"triton_version": triton.__version__} | {str(m): best[m] for m in sorted(best)}
    for target in [path] + ([args.copy] if args.copy else []):
        with open(target, "w") as f:
            json.dump(table, f, indent=4)
            f.write("\n")
    log(f"wrote {path} ({len(best)} batch sizes)")
    if args.report:
        with open(args.report, "w") as f:
            json.dump({str(m): report[m] | {"config": best[m]} for m in sorted(best)}, f, indent=1)


if __name__ == "__main__":
    main()
