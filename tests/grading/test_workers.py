"""The bounded math-verify helpers: hostile inputs return in time from a thread, a stuck helper is killed and
replaced, threads share helpers, grading works in a DataLoader worker."""

from __future__ import annotations

import os
import threading
import time

import pytest

from e2h.grading import VERIFY_TIMEOUT_S, is_equivalent, workers

# A call that reaches math-verify may also have to start a helper first (normally ~0.4 s; this machine's
# cores are shared, so allow more). Screened calls return in microseconds.
START_MARGIN_S = 20.0
TOWER_4 = "10^{10^{10^{10}}}"
TOWER_5 = "10^{10^{10^{10^{10}}}}"


def _run_in_thread(fn, bound_s: float):
    """Run fn() in a threading.Thread; assert it finished within bound_s; return (result, seconds)."""
    box: dict = {}

    def target() -> None:
        start = time.perf_counter()
        box["result"] = fn()
        box["seconds"] = time.perf_counter() - start

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(bound_s)
    assert not thread.is_alive(), f"still running after {bound_s} s"
    return box["result"], box["seconds"]


class _GradingDataset:
    """A map-style dataset whose items are grades computed inside the DataLoader worker process."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict:
        start = time.perf_counter()
        hostile = is_equivalent(TOWER_5, "1")
        verified = is_equivalent("0.5", r"\frac{1}{2}")  # needs math-verify: a helper in this process
        return {
            "hostile": hostile,
            "verified": verified,
            "seconds": time.perf_counter() - start,
            "own_pool": workers._pool is not None and workers._pool.pid == os.getpid(),
            "pid": os.getpid(),
        }


@pytest.mark.parametrize(
    "pred",
    [
        TOWER_4,
        TOWER_5,
        "(" * 2000 + "1" + ")" * 2000,
        "{" * 2000 + "1" + "}" * 2000,
        "9" * 100_000,
        "9999999!",
    ],
    ids=["tower4", "tower5", "parens2000", "braces2000", "100k_chars", "factorial"],
)
def test_hostile_inputs_return_within_bound_from_a_thread(pred: str) -> None:
    result, seconds = _run_in_thread(lambda: is_equivalent(pred, "1"), VERIFY_TIMEOUT_S + START_MARGIN_S)
    assert result is False
    assert seconds < 1.0  # screened: never handed to math-verify, so not even the helper deadline is spent


def test_helper_timeout_kills_and_restarts_the_helper() -> None:
    # Bypass screening to exercise the last line of defence: math-verify on a power tower never returns.
    _run_in_thread(lambda: is_equivalent("0.5", r"\frac{1}{2}"), START_MARGIN_S)  # a ready helper
    pool = workers._pool_for_this_process()
    timeouts_before = pool.timeouts
    result, seconds = _run_in_thread(
        lambda: workers._verify_with_helper(["1"], [TOWER_5], timeout=1.0), 1.0 + START_MARGIN_S
    )
    assert result is None  # undecided: the caller counts it apart (is_equivalent reads it as not equivalent)
    # A helper was ready, so nothing but its 1 s CPU budget (RLIMIT_CPU, rounded up, + 1 s grace) stands
    # between call and return: ended by that, not by the wall-clock limit (120 s), however loaded the machine
    # (on shared cores one CPU second can take several wall seconds, so the bound is the wall limit's quarter).
    assert 1.0 <= seconds < workers.wall_limit(1.0) / 4
    assert pool.timeouts == timeouts_before + 1
    # The stuck helper is gone; the next call gets a live one and grades correctly.
    assert is_equivalent("0.25", r"\frac14") is True


def test_threads_share_the_helpers() -> None:
    pairs = [("0.5", r"\frac{1}{2}", True), (r"\{3,1\}", r"\{1,3\}", True), ("0.3", r"\frac{1}{3}", False)]
    results: list[list[bool]] = [[] for _ in range(3)]

    def grade(i: int) -> None:
        results[i] = [is_equivalent(p, g) for p, g, _ in pairs]

    threads = [threading.Thread(target=grade, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3 * VERIFY_TIMEOUT_S + START_MARGIN_S)
        assert not t.is_alive()
    assert results == [[expected for _, _, expected in pairs]] * 3


def test_grading_inside_a_dataloader_worker() -> None:
    torch_data = pytest.importorskip("torch.utils.data")
    is_equivalent("0.5", r"\frac{1}{2}")  # the parent has a helper the (forked) worker must not reuse
    loader = torch_data.DataLoader(_GradingDataset(), batch_size=None, num_workers=1, timeout=60)
    (item,) = list(loader)
    assert item["pid"] != os.getpid()  # it really ran in the daemonic worker process
    assert item["hostile"] is False
    assert item["verified"] is True
    assert item["own_pool"] is True
    assert item["seconds"] < VERIFY_TIMEOUT_S + START_MARGIN_S
