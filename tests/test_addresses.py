"""Address parsing: every accepted form and its normal form, every refusal and its reason.
The cases are data, in tests/testdata/addresses.yaml."""

from pathlib import Path

import pytest
import yaml

from exporter.addresses import (
    parse_grpc_address,
    parse_listen_address,
    parse_rest_address,
    split_listen_address,
)

CASES = yaml.safe_load((Path(__file__).parent / "testdata" / "addresses.yaml")
                       .read_text(encoding="utf-8"))
PARSERS = {"grpc": (parse_grpc_address, "gRPC address"),
           "rest": (parse_rest_address, "REST address"),
           "listen": (parse_listen_address, "listen address")}


def _cases(state: str):
    return [pytest.param(kind, *case, id=f"{kind}:{case[0]}")
            for kind in PARSERS for case in CASES[kind][state]]


def test_every_kind_has_cases():
    assert set(CASES) == set(PARSERS)
    assert all(CASES[kind]["accepted"] and CASES[kind]["refused"] for kind in PARSERS)


@pytest.mark.parametrize("kind, value, normalised", [
    case for case in _cases("accepted") if case.values[0] != "listen"])
def test_accepts_addresses(kind, value, normalised):
    parse, _ = PARSERS[kind]
    assert parse(value) == normalised


@pytest.mark.parametrize("kind, value, normalised, host, port", [
    case for case in _cases("accepted") if case.values[0] == "listen"])
def test_accepts_listen_addresses(kind, value, normalised, host, port):
    assert parse_listen_address(value) == normalised
    assert split_listen_address(value) == (host, port)


@pytest.mark.parametrize("kind, value, reason", _cases("refused"))
def test_rejects_invalid_addresses_quoting_the_input(kind, value, reason):
    parse, what = PARSERS[kind]
    with pytest.raises(ValueError) as caught:
        parse(value)
    assert str(caught.value) == f'invalid {what} "{value}": {reason}'
    if kind == "listen":
        with pytest.raises(ValueError):
            split_listen_address(value)
