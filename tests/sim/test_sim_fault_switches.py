"""The sim's delivery-fault switches do what they say, alone and together, and refuse nonsense counts."""
from __future__ import annotations

import pytest

from polymm.sim.admin import AdminApi, AdminError
from polymm.sim.faults import Faults
from polymm.sim.ws import Conn


def conn(faults: Faults) -> Conn:
    return Conn(ws=None, transport=None, channel="market", faults=faults, stats={})


def sent(c: Conn) -> list[str]:
    return [text for _, text in c.queue]


def test_duplicate_alone_sends_the_next_frames_twice():
    faults = Faults(duplicate_next=1)
    c = conn(faults)
    c.send_data("a")
    c.send_data("b")
    assert sent(c) == ["a", "a", "b"]


def test_duplicate_still_fires_while_reorder_is_on():
    faults = Faults(duplicate_next=2, reorder_next=1)
    c = conn(faults)
    c.send_data("a")
    c.send_data("b")
    c.send_data("c")
    assert sent(c) == ["b", "b", "a", "a", "c"]
    assert faults.duplicate_next == 0 and faults.reorder_next == 0


def test_a_held_frame_flushed_alone_is_duplicated_too():
    faults = Faults(duplicate_next=1, reorder_next=1)
    c = conn(faults)
    c.send_data("a")
    c.flush_held(older_than_s=0.0)
    assert sent(c) == ["a", "a"]


class _NoSim:
    """AdminApi must refuse the parameters before it touches the sim."""

    faults = Faults()


@pytest.mark.parametrize("name", ["duplicate", "reorder"])
@pytest.mark.parametrize("count", [0, -1, 1.5, True, "2"])
def test_a_count_that_is_not_a_positive_whole_number_is_refused_not_taken_as_off(name, count):
    api = AdminApi(_NoSim())
    with pytest.raises(AdminError, match="count must be a positive integer"):
        api.faults[name]({"count": count})
    assert _NoSim.faults.duplicate_next == 0 and _NoSim.faults.reorder_next == 0
