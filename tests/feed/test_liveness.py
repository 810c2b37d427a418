"""The market socket's liveness (feed/liveness.py) and how readers judge it (feed/shm/layout.py Link): a quiet market
is alive, a PING unanswered too long is a dead socket, PONGs without data past a limit is a frozen one."""
from __future__ import annotations

import math

from polymm.feed.liveness import NOT_CONNECTED, LinkLiveness
from polymm.feed.shm.layout import _link_of


def link_at(live: LinkLiveness):
    return _link_of(live.facts())


def test_a_pong_answering_socket_without_data_is_alive_and_not_dead():
    live = LinkLiveness(ping_interval_s=10, pong_timeout_s=5, stale_after_s=15)
    live.on_connected(100.0)
    live.on_data(100.5)
    for t in (110.0, 120.0):
        live.on_ping(t)
        live.on_pong(t + 0.05)
    assert live.dead_reason(124.0) == ""
    link = link_at(live)
    assert link.connected and link.dead_reason(124.0) == "" and link.frame_age_s(124.0) < 4
    assert link.data_age_s(124.0) > 23 and "frozen" in link.frozen_reason(124.0)  # no data past stale_after_s
    assert link.frozen_reason(110.0) == ""  # quiet for 9.5 s: below the limit


def test_a_ping_unanswered_past_the_pong_timeout_is_a_dead_socket():
    live = LinkLiveness(ping_interval_s=10, pong_timeout_s=5, stale_after_s=15)
    live.on_connected(100.0)
    live.on_data(101.0)
    live.on_ping(110.0)
    assert live.dead_reason(114.9) == ""
    assert "no PONG 5.1s after our PING" in live.dead_reason(115.1)
    # a later PING does not restart the clock: the first unanswered one counts
    live.on_ping(120.0)
    assert live.dead_reason(120.1) != ""


def test_any_frame_after_the_ping_proves_the_socket_alive_and_the_next_ping_restarts_the_clock():
    live = LinkLiveness(ping_interval_s=10, pong_timeout_s=5)
    live.on_connected(100.0)
    live.on_ping(110.0)
    live.on_data(111.0)  # data, no PONG yet: alive
    assert live.dead_reason(117.0) == ""
    live.on_ping(120.0)  # outstanding since 110, answered by data since: the clock starts again here
    assert live.dead_reason(124.0) == "" and live.dead_reason(125.5) != ""


def test_readers_judge_a_silent_socket_dead_after_ping_interval_plus_pong_timeout():
    live = LinkLiveness(ping_interval_s=10, pong_timeout_s=5)
    live.on_connected(100.0)
    live.on_pong(101.0)
    link = link_at(live)
    assert link.silent_limit_s == 15
    assert link.dead_reason(115.9) == ""
    assert "silent: no frame for 15.1 s" in link.dead_reason(116.1)


def test_not_connected_is_dead_at_once_and_nothing_published_reads_not_connected():
    live = LinkLiveness()
    live.on_connected(100.0)
    live.on_closed()
    assert "not connected" in link_at(live).dead_reason(100.1)
    link = _link_of(NOT_CONNECTED)
    assert not link.connected and "not connected" in link.dead_reason(0.0)
    assert link.frame_age_s(5.0) == math.inf and link.frozen_reason(5.0) == ""


def test_a_socket_opened_ahead_of_its_window_counts_its_silence_from_the_window_start():
    # The next window's stream connects a while ahead; its market may be quiet until it opens. At the boundary the
    # silence before the window says nothing about the socket now: ages count from the activation.
    live = LinkLiveness(ping_interval_s=10, pong_timeout_s=5, stale_after_s=15)
    live.on_connected(100.0)
    live.on_data(100.2)  # the snapshot
    live.on_pong(110.0)
    live.on_activated(130.0)
    link = link_at(live)
    assert link.serving_since == 130.0
    assert link.data_age_s(131.0) == 1.0 and link.frozen_reason(131.0) == "" and link.dead_reason(131.0) == ""
