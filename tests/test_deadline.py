"""The scrape budget arithmetic: Prometheus' timeout header minus an offset, capped by config."""

import pytest

from exporter.tfserving.deadline import MIN_CALL_SECONDS, Deadline, scrape_budget


@pytest.mark.parametrize("header, offset, cap, expected", [
    (None, 0.5, 10.0, 10.0),            # no header: the configured cap
    ("", 0.5, 10.0, 10.0),
    ("10", 0.5, 30.0, 9.5),             # header minus offset
    ("10", 0.5, 5.0, 5.0),              # capped by config
    ("2.5", 0.5, 10.0, 2.0),
    ("0.4", 0.5, 10.0, 0.2),            # offset larger than the timeout: half the timeout
    ("0.8", 0.5, 10.0, 0.4),            # offset leaves less than half: half the timeout
    ("0.002", 0.5, 10.0, MIN_CALL_SECONDS),  # never below the shortest useful call
    ("abc", 0.5, 10.0, 10.0),           # unparsable header is ignored
    ("-3", 0.5, 10.0, 10.0),
    ("nan", 0.5, 10.0, 10.0),
    ("inf", 0.5, 10.0, 10.0),
])
def test_scrape_budget(header, offset, cap, expected):
    assert scrape_budget(header, offset, cap) == pytest.approx(expected)


def test_deadline_counts_down_and_expires():
    assert Deadline.after(60).remaining() > 59
    assert not Deadline.after(60).expired()
    assert Deadline.after(0).expired()
    assert Deadline.after(-1).remaining() < 0
