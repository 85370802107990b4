import io
import json
import logging
import re

import pytest

from exporter.logsetup import configure_logging

TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture
def stream():
    buffer = io.StringIO()
    yield buffer
    # Leave the package logger as other tests expect to find it: no handler of ours, no level.
    logger = logging.getLogger("exporter")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def lines(stream):
    return stream.getvalue().splitlines()


def test_logfmt_line_has_fixed_keys_then_extras(stream):
    configure_logging("info", "logfmt", stream)
    logging.getLogger("exporter.server").info("listening", extra={"address": ":9850"})
    [line] = lines(stream)
    assert re.fullmatch(f'ts={TS} level=info logger=exporter.server msg="listening" address=:9850', line)


@pytest.mark.parametrize("value, rendered", [
    ("plain", "plain"),
    ("", '""'),
    ("two words", '"two words"'),
    ("a=b", '"a=b"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("line\nbreak", '"line\\nbreak"'),
    ("tab\there", '"tab\\there"'),
    ("bell\x07", '"bell\\u0007"'),
    ("naïve", "naïve"),
    (True, "true"),
    (None, "null"),
    (1.5, "1.5"),
    (["a", "b"], "\"['a', 'b']\""),
])
def test_logfmt_quotes_and_escapes_values(stream, value, rendered):
    configure_logging("info", "logfmt", stream)
    logging.getLogger("exporter.test").info("m", extra={"key": value})
    assert lines(stream)[0].endswith(f' msg="m" key={rendered}')


def test_logfmt_always_quotes_and_escapes_the_message(stream):
    configure_logging("info", "logfmt", stream)
    logging.getLogger("exporter.test").warning('scrape of %s failed:\n"%s"', "m1", "boom")
    assert lines(stream) == [lines(stream)[0]]  # one line even with a newline inside
    assert lines(stream)[0].endswith('level=warn logger=exporter.test msg="scrape of m1 failed:\\n\\"boom\\""')


def test_logfmt_puts_a_traceback_on_one_line(stream):
    configure_logging("info", "logfmt", stream)
    try:
        raise RuntimeError("bad")
    except RuntimeError:
        logging.getLogger("exporter.test").exception("failed")
    [line] = lines(stream)
    assert 'level=error logger=exporter.test msg="failed" exc="Traceback (most recent call last):\\n' in line
    assert line.endswith('RuntimeError: bad"')


def test_json_lines_keep_types_and_escape_strings(stream):
    configure_logging("debug", "json", stream)
    logging.getLogger("exporter.collectors").debug("took %d ms", 12, extra={
        "model": 'half "plus" two\n', "versions": 3, "ok": False, "ratio": 0.5,
        "bad": float("nan"), "labels": ("a",), "level": "shadowed"})
    [line] = lines(stream)
    record = json.loads(line)
    assert re.fullmatch(TS, record.pop("ts"))
    assert record == {"level": "debug", "logger": "exporter.collectors", "msg": "took 12 ms",
                      "model": 'half "plus" two\n', "versions": 3, "ok": False, "ratio": 0.5,
                      "bad": "nan", "labels": "('a',)", "level_": "shadowed"}
    assert list(json.loads(line))[:4] == ["ts", "level", "logger", "msg"]


def test_extra_key_named_like_a_fixed_key_does_not_replace_it(stream):
    configure_logging("info", "logfmt", stream)
    logging.getLogger("exporter.test").info("m", extra={"level": "debug", "ts": "now", "logger": "x"})
    assert lines(stream)[0].split(" ", 1)[1] == 'level=info logger=exporter.test msg="m" level_=debug ts_=now logger_=x'


@pytest.mark.parametrize("level, shown", [
    ("debug", ["debug", "info", "warn", "error"]),
    ("info", ["info", "warn", "error"]),
    ("warn", ["warn", "error"]),
    ("error", ["error"]),
])
def test_level_filters_lower_levels(stream, level, shown):
    configure_logging(level, "logfmt", stream)
    log = logging.getLogger("exporter.test")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [re.search(r"level=(\w+)", line).group(1) for line in lines(stream)] == shown


def test_configuring_twice_replaces_the_handler(stream):
    other = io.StringIO()
    configure_logging("info", "logfmt", other)
    configure_logging("info", "json", stream)
    logging.getLogger("exporter.test").info("once")
    assert other.getvalue() == ""
    assert len(lines(stream)) == 1 and json.loads(lines(stream)[0])["msg"] == "once"


def test_other_packages_are_left_alone(stream):
    configure_logging("debug", "logfmt", stream)
    logging.getLogger("urllib3").warning("not ours")
    assert stream.getvalue() == ""


@pytest.mark.parametrize("level, fmt, message", [
    ("trace", "logfmt", 'unknown log level "trace"; use one of debug, info, warn, error'),
    ("info", "text", 'unknown log format "text"; use one of logfmt, json'),
])
def test_rejects_unknown_level_or_format(level, fmt, message):
    with pytest.raises(ValueError) as caught:
        configure_logging(level, fmt)
    assert str(caught.value) == message


def test_a_failure_held_back_by_the_rate_limit_is_logged_once_its_window_ends():
    # fail -> recover -> fail differently within a minute: the rate limit holds the second
    # failure's line back (same collector); the collection logs a lasting failure again when
    # the window has passed, so it is seen, with the number held back.
    import io

    from exporter.collection import _ErrorLog
    from exporter.logsetup import RATE_LIMIT_SECONDS, RateLimit

    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RateLimit(clock=clock))
    logger = logging.getLogger("exporter.collection")
    logger.addHandler(handler)
    errors = _ErrorLog(clock=clock)
    try:
        errors.update("status", "UNAVAILABLE")
        errors.update("status", None)
        errors.update("status", "NOT_FOUND: m")
        for _ in range(10):  # scrapes within the window: nothing new
            now[0] += 1
            errors.update("status", "NOT_FOUND: m")
        assert "NOT_FOUND" not in stream.getvalue()
        now[0] += RATE_LIMIT_SECONDS
        errors.update("status", "NOT_FOUND: m")
        assert stream.getvalue().count("NOT_FOUND: m") == 1
    finally:
        logger.removeHandler(handler)
