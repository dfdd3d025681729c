"""The bounded pool of math-verify helper processes behind `is_equivalent` and the free-text step of
`extract_answer` (`_verify_with_helper`, `_extract_with_helper`).

math-verify runs in a persistent child process (``_verify_worker.py`` beside this file) spoken to in JSON
lines. The caller enforces a deadline; on expiry it kills the child, answers "not equivalent" and starts a
fresh child on the next call. Children are started with ``subprocess.Popen`` (not ``multiprocessing``), so
this also works inside daemonic DataLoader workers; a forked process never reuses its parent's children;
threads share at most `MAX_VERIFY_WORKERS` children.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

#: Default CPU seconds one math-verify comparison may use before it counts as "not equivalent" (undecided).
#: CPU time, not wall-clock time: the same pair gets the same verdict on an idle and on a loaded machine
#: (the helper's RLIMIT_CPU ends it; the wall-clock limit below only catches a helper that hangs).
VERIFY_TIMEOUT_S: float = 5.0
#: A request's wall-clock limit is this many times its CPU budget, and at least WALL_FLOOR_S: a helper
#: descheduled on a busy machine is waited for; only one that stopped working is given up on.
WALL_FACTOR: float = 20.0
WALL_FLOOR_S: float = 120.0
#: Seconds a helper process may take to import math-verify and report ready.
WORKER_START_TIMEOUT_S: float = 60.0
#: Most helper processes one process keeps (threads beyond this queue for a free one).
MAX_VERIFY_WORKERS: int = 4
#: Address-space cap of a helper process; a runaway sympy computation fails with MemoryError there
#: instead of swapping the trainer's machine. math-verify itself needs ~100 MB.
WORKER_MEMORY_LIMIT_BYTES: int = 2 * 1024**3

_WORKER_FILE = Path(__file__).with_name("_verify_worker.py")
# Run the worker file as __main__ without putting its folder on sys.path (a module beside it could shadow the
# standard library) and without importing the e2h package (whose __init__ may pull in torch).
_BOOTSTRAP = (
    "import runpy, sys\n"
    "if sys.path and sys.path[0] == '': sys.path.pop(0)  # the working directory (absent under -P)\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


class WorkerError(RuntimeError):
    """The math-verify helper process could not be started."""


class _Worker:
    """One math-verify helper process, spoken to in JSON lines over its stdin/stdout."""

    def __init__(self, start_timeout: float) -> None:
        self._buffer = b""
        self._next_id = 0
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, str(_WORKER_FILE), str(WORKER_MEMORY_LIMIT_BYTES)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # Own session: a Ctrl-C in the terminal stops the trainer, not (noisily) its helpers; a
                # helper exits by itself when its stdin closes.
                start_new_session=True,
            )
        except OSError as e:
            raise WorkerError(f"cannot start the math-verify helper ({sys.executable}): {e}") from e
        assert self.proc.stdout is not None
        # poll(), not select(): select() fails on descriptors above 1024, common in a big trainer.
        self._poller = select.poll()
        self._poller.register(self.proc.stdout.fileno(), select.POLLIN)
        try:
            ready = self._read_message(time.monotonic() + start_timeout)
        except BaseException:
            self.kill()
            raise
        if ready is None or not ready.get("ready"):
            try:
                exit_code: int | None = self.proc.wait(timeout=0.5)  # EOF: let it finish exiting
            except subprocess.TimeoutExpired:
                exit_code = None
            self.kill()
            what = f"exited with code {exit_code}" if exit_code is not None else f"not ready in {start_timeout:g} s"
            raise WorkerError(f"the math-verify helper {what}; see its stderr above")

    def _read_message(self, deadline: float) -> dict | None:
        """The next JSON line from the helper, or None on deadline, EOF or garbage."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not self._poller.poll(max(1, math.ceil(remaining * 1000))):
                continue  # woke early or timed out: the loop re-checks the deadline
            chunk = os.read(fd, 65536)
            if not chunk:
                return None  # the helper died
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    def ask(self, request: dict, timeout: float) -> dict | None:
        """Send one request (an ``id`` is added) and wait for its reply; None when it timed out or died."""
        assert self.proc.stdin is not None
        self._next_id += 1
        request = {"id": self._next_id, **request, "budget_s": timeout}
        deadline = time.monotonic() + wall_limit(timeout)
        try:
            # Requests are capped (MAX_ANSWER_CHARS, MAX_FREE_TEXT_CHARS), far below a pipe buffer, and the
            # helper has read all earlier requests (it answered them), so this write cannot block.
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            return None
        while True:
            reply = self._read_message(deadline)
            if reply is None:
                return None
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    logger.debug("math-verify helper error: %s", reply["error"])
                return reply

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """Stop the helper now and reap it (SIGKILL: it may be stuck in C code that ignores signals)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


def wall_limit(cpu_budget: float) -> float:
    """Wall-clock seconds a request with `cpu_budget` CPU seconds is waited for (see WALL_FACTOR)."""
    return max(WALL_FLOOR_S, WALL_FACTOR * cpu_budget)


class _WorkerPool:
    """Helpers shared by the threads of one process; at most ``size`` exist, started on demand."""

    def __init__(self, size: int) -> None:
        self.pid = os.getpid()
        self.size = max(1, size)
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._live = 0
        self.started = 0  # helpers started so far (tests and benchmarks read these two)
        self.timeouts = 0  # requests that timed out (or whose helper died): each cost a helper

    def acquire(self, start_timeout: float) -> _Worker:
        with self._cond:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    worker.kill()
                    self._live -= 1
                if self._live < self.size:
                    self._live += 1
                    break
                self._cond.wait()
        try:
            # Started outside the lock so other threads keep using their helpers meanwhile.
            worker = _Worker(start_timeout)
        except BaseException:
            with self._cond:
                self._live -= 1
                self._cond.notify()
            raise
        with self._cond:
            self.started += 1
        return worker

    def release(self, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()
        with self._cond:
            if healthy:
                self._idle.append(worker)
            else:
                self._live -= 1
                self.timeouts += 1
            self._cond.notify()

    def close(self) -> None:
        """Stop the idle helpers (busy ones are stopped by their callers' deadlines)."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._live -= len(idle)
        for worker in idle:
            worker.kill()


_pool: _WorkerPool | None = None
_pool_lock = threading.Lock()
# Pools inherited through fork belong to the parent; keep references so their pipes are never flushed or
# closed from the child (garbage collection would do both).
_inherited_pools: list[_WorkerPool] = []


def _pool_for_this_process() -> _WorkerPool:
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            if _pool is not None:
                _inherited_pools.append(_pool)
            _pool = _WorkerPool(MAX_VERIFY_WORKERS)
        return _pool


def _forget_pool_after_fork() -> None:
    # In a forked child (e.g. a DataLoader worker) the parent's helpers are not ours, and the lock may
    # have been held by a parent thread that does not exist here: start over.
    global _pool, _pool_lock
    if _pool is not None:
        _inherited_pools.append(_pool)
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


@atexit.register
def _shutdown() -> None:
    if _pool is not None and _pool.pid == os.getpid():
        _pool.close()


def check_timeout(timeout: float) -> None:
    """A helper's CPU budget must be a positive, finite number of seconds."""
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")


def _ask_helper(request: dict, timeout: float) -> dict | None:
    """One request to a helper of this process's pool; its reply, or None when the helper ran out of its CPU
    budget or died (it is then stopped, and a fresh one starts on the next call)."""
    pool = _pool_for_this_process()
    worker = pool.acquire(WORKER_START_TIMEOUT_S)
    reply = None
    try:
        reply = worker.ask(request, timeout)
    finally:
        # Any exception here (KeyboardInterrupt while waiting) leaves the helper's state unknown: kill it.
        pool.release(worker, reply is not None)
    return reply


def _verify_with_helper(golds: Sequence[str], preds: Sequence[str], timeout: float) -> bool | None:
    """math-verify on (golds[i], preds[i]) pairs in a helper, True if any pair verifies; None (undecided) when
    the helper ran out of its CPU budget or died."""
    reply = _ask_helper({"golds": list(golds), "preds": list(preds)}, timeout)
    if reply is None:
        logger.warning(
            "math-verify gave no answer within %.3g CPU seconds (gold %.60r, prediction %.60r); counted as not "
            "equivalent (undecided), helper stopped (a fresh one starts on the next call)", timeout, golds[0], preds[0],
        )
        return None
    return False if "error" in reply else bool(reply.get("equivalent"))


#: Longest free text handed to math-verify's extraction: only this many characters at the end of a
#: completion are searched (the final answer is at the end; math-verify's regexes are slow on long text).
MAX_FREE_TEXT_CHARS: int = 4000


def _extract_with_helper(text: str, timeout: float) -> str | None:
    """math-verify's last mathematical expression in ``text`` (its tail, MAX_FREE_TEXT_CHARS), run in a helper
    within ``timeout`` CPU seconds; None when it finds none, ran out of time or died."""
    text = text[-MAX_FREE_TEXT_CHARS:]
    reply = _ask_helper({"extract": text}, timeout)
    if reply is None:
        logger.warning(
            "math-verify found no answer in free text within %.3g CPU seconds (text ending %.60r); counted as "
            "no answer, helper stopped (a fresh one starts on the next call)", timeout, text[-60:],
        )
        return None
    answer = reply.get("answer")
    return answer if isinstance(answer, str) and "error" not in reply else None
