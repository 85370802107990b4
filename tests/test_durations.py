import math

import pytest

from exporter.durations import format_duration, is_exact_duration, parse_duration


@pytest.mark.parametrize("text, seconds", [
    ("500ms", 0.5),
    ("5s", 5.0),
    ("1m30s", 90.0),
    ("1h", 3600.0),
    ("2d", 172800.0),
    ("1w", 604800.0),
    ("1y", 365 * 86400.0),
    ("1d2h3m4s5ms", 93784.005),
    ("90s", 90.0),  # a unit may exceed the next larger one, as in Prometheus
    ("0", 0.0),  # the one unit-less string: zero is zero in every unit
    ("0s", 0.0),
])
def test_parses_duration_strings(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("number, seconds", [(10, 10.0), (0, 0.0), (2.5, 2.5), (0.0001, 0.0001)])
def test_yaml_numbers_are_seconds(number, seconds):
    assert parse_duration(number) == seconds


@pytest.mark.parametrize("value, message", [
    ("", 'invalid duration "": empty string'),
    ("5", 'invalid duration "5": missing unit (for example "5s"); units are ms, s, m, h, d, w, y'),
    ("5x", 'invalid duration "5x": unknown unit "x"; units are ms, s, m, h, d, w, y'),
    ("1M", 'invalid duration "1M": unknown unit "M"; units are ms, s, m, h, d, w, y'),
    ("1.5s", 'invalid duration "1.5s": fractions are not allowed, use a smaller unit '
             '(for example "1500ms" instead of "1.5s")'),
    ("1s1m", 'invalid duration "1s1m": units must go from largest to smallest, each at most once'),
    ("1s1s", 'invalid duration "1s1s": units must go from largest to smallest, each at most once'),
    ("-5s", 'invalid duration "-5s": must not be negative'),
    ("1m 30s", 'invalid duration "1m 30s": expected integers with units, such as "500ms", "1m30s" or "2h"'),
    ("s", 'invalid duration "s": expected integers with units, such as "500ms", "1m30s" or "2h"'),
    (-1, "invalid duration -1: must not be negative"),
    (math.inf, "invalid duration inf: must be a finite number of seconds"),
    (True, 'invalid duration True: expected a string like "30s" or a number of seconds'),
    (["5s"], "invalid duration ['5s']: expected a string like \"30s\" or a number of seconds"),
])
def test_rejects_invalid_durations_quoting_the_input(value, message):
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == message


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"),
    (0.5, "500ms"),
    (5, "5s"),
    (90, "1m30s"),
    (3600.001, "1h1ms"),
    (777601, "1w2d1s"),
    (365 * 86400 + 1, "1y1s"),
    (0.0004, "0s"),  # below the grammar's smallest unit
])
def test_formats_like_prometheus(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("value", [-1, math.nan, math.inf, "5s"])
def test_format_rejects_what_no_duration_string_can_express(value):
    with pytest.raises(ValueError, match="cannot format"):
        format_duration(value)


@pytest.mark.parametrize("seconds", [0.001, 0.1, 0.25, 1.5, 59.999, 90, 86400 * 3 + 7, 31536000 * 2])
def test_format_then_parse_gives_the_same_seconds(seconds):
    assert parse_duration(format_duration(seconds)) == seconds
    assert is_exact_duration(seconds)


def test_sub_millisecond_values_are_not_exact():
    assert not is_exact_duration(0.0004)
