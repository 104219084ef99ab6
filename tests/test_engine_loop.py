"""The engine loop a GPU worker's batches share (ingest/engines/deepseek_ocr2/engine_loop.py), driven against
a small continuous-batching engine with vLLM's `add_request` / `step` / `abort_request` surface: each page
takes a fixed number of steps, every running page advances on each step. What is under test is the loop:
who gets which page back, when pages enter, what it holds, what it aborts."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

import pytest
from PIL import Image

from docground.ingest.engines.deepseek_ocr2.engine_loop import EngineLoop
from docground.ingest.engines.deepseek_ocr2.prompt import Sampling
from docground.ingest.engines.deepseek_ocr2.schema import FINISH_LENGTH, Generation, PageRequest


@dataclass
class Output:
    request_id: str
    finished: bool
    text: str


@dataclass
class StepEngine:
    """Pages of `steps` steps each; records which pages ran together at every step."""

    steps: int = 5
    running: dict[str, list] = field(default_factory=dict)  # id -> [engine input, steps left]
    batches: list[set[str]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)  # while set, steps advance no page
    fail_next_step: bool = False

    def add_request(self, request_id, engine_input, params):
        if engine_input == "refuse":
            raise ValueError("prompt too long")
        self.running[request_id] = [engine_input, self.steps]

    def abort_request(self, ids):
        for request_id in ids:
            self.aborted.append(request_id)
            self.running.pop(request_id, None)

    def step(self):
        if self.hold.is_set():
            self.batches.append(set(self.running))
            threading.Event().wait(0.001)
            return []
        if self.fail_next_step:
            self.fail_next_step = False
            raise RuntimeError("engine core died")
        self.batches.append(set(self.running))
        outs = []
        for request_id, state in list(self.running.items()):
            state[1] -= 1
            if state[1] == 0:
                del self.running[request_id]
                outs.append(Output(request_id, True, f"read {state[0]}"))
        return outs


def request(label: str) -> PageRequest:
    return PageRequest(Image.new("RGB", (8, 8)), label, Sampling(max_tokens=4))


def done_render(req: PageRequest) -> Future:
    f: Future = Future()
    f.set_result(req.task)
    return f


def finish(out: Output) -> Generation:
    return Generation(text=out.text, finish_reason=FINISH_LENGTH, tokens=4)


def wait_for(condition, what: str, timeout_s: float = 10.0) -> None:
    deadline = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        deadline.wait(0.01)
    raise AssertionError(f"never: {what}")


def make_loop(engine, capacity=64, render=done_render) -> EngineLoop:
    return EngineLoop(engine, render, lambda r: r.sampling, finish, capacity=capacity)


@pytest.fixture
def engine_and_loop():
    made = []

    def make(**kwargs):
        engine = StepEngine(**{k: v for k, v in kwargs.items() if k == "steps"})
        loop = make_loop(engine, **{k: v for k, v in kwargs.items() if k != "steps"})
        made.append(loop)
        return engine, loop

    yield make
    for loop in made:
        loop.close()


def test_every_caller_gets_its_own_pages_back_in_order(engine_and_loop):
    _, loop = engine_and_loop()
    results: dict[str, list[str]] = {}

    def caller(name: str, n: int):
        results[name] = [g.text for g in loop.generate(request(f"{name}{i}") for i in range(n))]

    threads = [threading.Thread(target=caller, args=(name, n)) for name, n in (("a", 7), ("b", 3), ("c", 11))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {name: [f"read {name}{i}" for i in range(n)] for name, n in (("a", 7), ("b", 3), ("c", 11))}


def test_a_second_batch_joins_the_engine_while_the_first_is_still_decoding(engine_and_loop):
    """The point of the loop: a task boundary does not drain the engine. Batch b arrives while batch a's
    pages run; with one engine per call (or a lock around each call) b would wait until a finished."""
    engine, loop = engine_and_loop(steps=3)
    engine.hold.set()  # batch a keeps decoding until the test lets it finish
    out: dict[str, list[Generation]] = {}
    first = threading.Thread(target=lambda: out.setdefault("a", loop.generate(request(f"a{i}") for i in range(4))))
    first.start()
    wait_for(lambda: len(engine.running) == 4, "batch a in the engine")
    second = threading.Thread(target=lambda: out.setdefault("b", loop.generate(request(f"b{i}") for i in range(4))))
    second.start()
    wait_for(lambda: len(engine.running) == 8, "batch b in the engine beside batch a")
    engine.hold.clear()
    first.join(10)
    second.join(10)
    assert [g.text for g in out["a"]] == [f"read a{i}" for i in range(4)]
    assert [g.text for g in out["b"]] == [f"read b{i}" for i in range(4)]
    assert loop.peak_in_engine == 8


def test_pages_held_at_once_never_exceed_the_capacity(engine_and_loop):
    held, peak, lock = [0], [0], threading.Lock()

    def render(req: PageRequest) -> Future:
        with lock:
            held[0] += 1
            peak[0] = max(peak[0], held[0])
        return done_render(req)

    def finish_counting(out: Output) -> Generation:
        with lock:
            held[0] -= 1
        return finish(out)

    engine = StepEngine(steps=3)
    loop = EngineLoop(engine, render, lambda r: r.sampling, finish_counting, capacity=5)
    try:
        threads = [threading.Thread(target=loop.generate, args=([request(f"{c}{i}") for i in range(9)],))
                   for c in "xyz"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        loop.close()
    assert peak[0] == 5 and held[0] == 0
    assert max(len(b) for b in engine.batches) == 5


def test_an_interrupted_caller_takes_its_pages_out_and_the_others_finish(engine_and_loop):
    engine, loop = engine_and_loop(steps=3)
    engine.hold.set()
    other: list[Generation] = []
    t = threading.Thread(target=lambda: other.extend(loop.generate(request(f"o{i}") for i in range(3))))
    t.start()

    def pages_then_crash():
        for i in range(3):
            yield request(f"x{i}")
        wait_for(lambda: len(engine.running) == 6, "all six pages in the engine")
        raise KeyboardInterrupt  # e.g. the worker is told to stop mid-batch

    with pytest.raises(KeyboardInterrupt):
        loop.generate(pages_then_crash())
    wait_for(lambda: len(engine.aborted) == 3, "the interrupted caller's pages aborted")
    engine.hold.clear()
    t.join(10)
    assert [g.text for g in other] == ["read o0", "read o1", "read o2"]
    assert sorted(engine.aborted) == sorted(set(engine.aborted)) and not engine.running


def test_a_refused_or_unrenderable_page_fails_alone(engine_and_loop):
    def render(req: PageRequest) -> Future:
        if req.task == "broken":
            raise OSError("truncated image")
        return done_render(req)

    engine = StepEngine(steps=2)
    loop = make_loop(engine, render=render)
    try:
        gens = loop.generate([request("ok"), request("broken"), request("refuse"), request("fine")])
    finally:
        loop.close()
    assert [g.text for g in gens] == ["read ok", "", "", "read fine"]
    assert "truncated image" in gens[1].error and "prompt too long" in gens[2].error


def test_a_broken_engine_fails_the_pages_in_it_and_the_loop_carries_on(engine_and_loop):
    engine, loop = engine_and_loop(steps=2)
    engine.fail_next_step = True
    with pytest.raises(RuntimeError, match="engine core died"):
        loop.generate([request("a"), request("b")])
    assert [g.text for g in loop.generate([request("c")])] == ["read c"]  # slots were given back


def test_streaming_listeners_see_unfinished_outputs(engine_and_loop):
    seen: list[str] = []

    class Streaming(StepEngine):
        def step(self):
            outs = super().step()
            return outs + [Output(rid, False, "partial") for rid in self.running]

    engine = Streaming(steps=3)
    loop = make_loop(engine)
    try:
        _, result = loop.submit(request("s"), on_output=lambda out: seen.append(out.text))
        assert result.result(5).text == "read s"
    finally:
        loop.close()
    assert seen == ["partial", "partial", "read s"]
