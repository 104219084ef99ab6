"""One continuous-batching engine fed by every caller at once: the pages of the next batch enter while the
last batch's pages are still decoding, so a task boundary never drains the engine.

A vLLM `LLMEngine` is driven by one thread (it is not thread-safe): that thread admits rendered pages,
steps the engine and hands each finished page to whoever asked for it. Callers (the page batches of a
GPU worker, one thread each) only render and wait. Pages held at once, rendered or in the engine, are
bounded by `capacity` (the engine's sequences plus a queue that refills it the moment pages finish), which
also bounds host memory: a rendered A4 page holds ~55 MB of pixel tensors until the encoder has read it.

The engine needs `add_request(id, engine_input, params)`, `step() -> outputs with .request_id and
.finished` and `abort_request(ids)`; vLLM is never imported here.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, InvalidStateError

from .schema import Generation, PageRequest

log = logging.getLogger("docground.ocr")

IDLE_WAIT_S = 0.05  # how long the loop sleeps on an empty engine before looking for new pages again


class EngineLoop:
    def __init__(self, engine, render: Callable[[PageRequest], Future], params: Callable[[PageRequest], object],
                 finish: Callable[[object], Generation], capacity: int, name: str = "engine-loop"):
        """`render(request)` returns a future of the engine input, `params(request)` the engine's sampling
        parameters, `finish(output)` the page's Generation from a finished engine output."""
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.engine = engine
        self._render, self._params, self._finish = render, params, finish
        self.capacity = capacity
        self._slots = threading.Semaphore(capacity)
        self._ids = itertools.count()
        # ("add", id, render future, params, result, on_output) | ("abort", id) | ("wake",)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        self.peak_in_engine = 0  # most pages the engine held at once (benchmarks report it)
        self.finish_times: list[float] | None = None  # a list: time.monotonic() of each finished page is appended

    # ---- callers (any thread)
    def generate(self, requests: Iterable[PageRequest]) -> list[Generation]:
        """One Generation per request, in order. Pages enter as slots free up, so a caller with more pages
        than `capacity` still makes progress beside the others; an interrupted caller's pages are aborted."""
        mine: list[tuple[str, Future]] = []
        try:
            for request in requests:
                mine.append(self.submit(request))
            return [self._wait(result) for _, result in mine]
        except BaseException:
            self.abort([request_id for request_id, result in mine if not result.done()])
            raise

    def submit(self, request: PageRequest, params=None, on_output: Callable[[object], None] | None = None,
               ) -> tuple[str, Future]:
        """One page into the engine (after a free slot): its id and the future of its Generation. `params`
        replaces `params(request)`; `on_output` sees every unfinished output of the page (streaming)."""
        self._take_slot()
        request_id = f"dg{next(self._ids)}"
        result: Future = Future()
        result.add_done_callback(lambda _: self._slots.release())
        try:
            rendering = self._render(request)
            params = self._params(request) if params is None else params
        except Exception as exc:  # a page that cannot be rendered fails alone
            result.set_result(Generation.failed(f"{type(exc).__name__}: {exc}"))
            return request_id, result
        rendering.add_done_callback(
            lambda f: self._post(("add", request_id, f, params, result, on_output)))
        return request_id, result

    def abort(self, request_ids: list[str]) -> None:
        """Take pages out of the engine (or drop them when they arrive): their futures resolve as failed."""
        for request_id in request_ids:
            self._post(("abort", request_id))

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the loop; pages still in it resolve as failed."""
        self._closed.set()
        self._inbox.put(("wake",))
        self._thread.join(timeout_s)
        self._fail_queued()

    def _wait(self, result: Future) -> Generation:
        while True:
            try:
                return result.result(timeout=1.0)
            except TimeoutError:
                if not self._thread.is_alive():  # closed under this caller: whatever it still waits for failed
                    self._fail_queued()
                    _settle(result, Generation.failed("the engine was closed"))

    def _take_slot(self) -> None:
        while not self._slots.acquire(timeout=1.0):
            if self._closed.is_set() or not self._thread.is_alive():
                raise RuntimeError("the engine loop has stopped")

    def _post(self, message: tuple) -> None:
        if self._closed.is_set():
            if message[0] == "add":
                _settle(message[4], Generation.failed("the engine was closed"))
            return
        self._inbox.put(message)

    # ---- the loop (its own thread: the only one that touches the engine)
    def _loop(self) -> None:
        running: dict[str, Future] = {}
        watchers: dict[str, Callable[[object], None]] = {}
        aborted: set[str] = set()
        while not self._closed.is_set():
            try:
                self._take_messages(running, watchers, aborted, block=not running)
            except Exception:  # never let the one thread that drives the engine die
                log.exception("the engine loop could not take new pages")
            if not running:
                continue
            try:
                outputs = self.engine.step()
            except Exception as exc:  # the engine broke: every page in it fails; callers fall back
                log.exception("the engine failed while %d pages were in flight", len(running))
                for result in running.values():
                    result.set_exception(exc)
                running.clear()
                watchers.clear()
                continue
            for out in outputs:
                if out.request_id in watchers:
                    _notify(watchers, out)
                if out.finished and out.request_id in running:
                    watchers.pop(out.request_id, None)
                    result = running.pop(out.request_id)
                    if self.finish_times is not None:
                        self.finish_times.append(time.monotonic())
                    try:
                        result.set_result(self._finish(out))
                    except Exception as exc:
                        result.set_result(Generation.failed(f"{type(exc).__name__}: {exc}"))
        for result in running.values():
            _settle(result, Generation.failed("the engine was closed"))
        self._fail_queued()

    def _take_messages(self, running: dict[str, Future], watchers: dict, aborted: set[str], block: bool) -> None:
        """Admit every page rendered meanwhile and apply aborts; with an empty engine, wait a little first."""
        try:
            message = self._inbox.get(timeout=IDLE_WAIT_S) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            if message[0] == "add":
                self._admit(message, running, watchers, aborted)
            elif message[0] == "abort":
                request_id = message[1]
                if request_id in running:
                    try:
                        self.engine.abort_request([request_id])
                    except Exception:
                        log.exception("aborting %s", request_id)
                    watchers.pop(request_id, None)
                    running.pop(request_id).set_result(Generation.failed("aborted: its caller stopped waiting"))
                else:
                    aborted.add(request_id)  # still rendering: dropped when it arrives
            try:
                message = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _admit(self, message: tuple, running: dict[str, Future], watchers: dict, aborted: set[str]) -> None:
        _, request_id, rendering, params, result, on_output = message
        if request_id in aborted:
            aborted.discard(request_id)
            result.set_result(Generation.failed("aborted: its caller stopped waiting"))
            return
        try:
            self.engine.add_request(request_id, rendering.result(), params)
        except Exception as exc:  # a page the engine refuses (too large, undecodable) fails alone
            result.set_result(Generation.failed(f"{type(exc).__name__}: {exc}"))
            return
        running[request_id] = result
        if on_output is not None:
            watchers[request_id] = on_output
        self.peak_in_engine = max(self.peak_in_engine, len(running))

    def _fail_queued(self) -> None:
        while True:
            try:
                message = self._inbox.get_nowait()
            except queue.Empty:
                return
            if message[0] == "add":
                _settle(message[4], Generation.failed("the engine was closed"))


def _settle(result: Future, generation: Generation) -> None:
    """Resolve a page's future unless something else already did (a closing engine races its callers)."""
    try:
        result.set_result(generation)
    except InvalidStateError:
        pass


def _notify(watchers: dict, out) -> None:
    try:
        watchers[out.request_id](out)
    except Exception:  # a failing listener loses its stream, never the page
        log.exception("streaming output of %s", out.request_id)
        watchers.pop(out.request_id, None)
