"""The sim tests' live-market helper (tests/support/execution.py): a test never starts in its window's last
seconds, where the sim closes the market and cancels what rests on it."""
from __future__ import annotations

import time

from tests.support import execution


class FakeAdmin:
    """A sim whose live window ends `left_s` from now; the next one is listed once the first has ended."""

    def __init__(self, left_s: float, length_s: float = 900.0) -> None:
        self.end = time.time() + left_s
        self.length = length_s
        self.calls = 0

    def live_market(self) -> dict:
        self.calls += 1
        now = time.time()
        end = self.end if now < self.end else self.end + self.length
        return {"condition_id": f"0x{int(end)}", "up_token": "1", "down_token": "2", "window_start": end - self.length,
                "window_end": end, "tick_size": "0.01"}


class FakeSim:
    def __init__(self, admin: FakeAdmin) -> None:
        self.admin = admin


def test_a_window_with_time_left_is_taken_at_once():
    admin = FakeAdmin(left_s=300)
    m = execution.live_market(FakeSim(admin))
    assert m.window_end == int(admin.end) and admin.calls == 1


def test_a_window_in_its_last_seconds_is_skipped_for_the_next():
    admin = FakeAdmin(left_s=0.5)
    m = execution.live_market(FakeSim(admin), min_left_s=60)
    assert m.window_end == int(admin.end + admin.length)
    assert time.time() >= admin.end  # it waited for the next window rather than trade the ending one


def test_a_short_window_needs_a_quarter_of_itself_left_not_a_minute():
    admin = FakeAdmin(left_s=20, length_s=60)  # a 60-s sim window with 20 s left: enough for a test
    m = execution.live_market(FakeSim(admin))
    assert m.window_end == int(admin.end) and admin.calls == 1
