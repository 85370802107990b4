"""Which hosts ``/probe`` may connect to: CIDRs and host-name globs (``probe.allowed_targets``).

Without this list anyone who can reach the exporter could make it open connections anywhere
(the SSRF problem of every multi-target exporter). The two kinds of pattern never mix:

- an IP address target matches CIDRs only (an exact address is a one-address CIDR); an
  IPv4-mapped IPv6 address counts as the IPv4 address it is dialled as;
- a name matches globs only, label by label, as TLS wildcards do: ``*`` never crosses a dot,
  so ``tfserving-*.ml.svc`` cannot admit ``tfserving-x.attacker.example``. Names are never
  resolved here: what a name resolves to when checked need not be what the connection uses.

Patterns that look like IP prefixes (``10.*``) are refused in favour of CIDRs, since as globs
they would match names such as ``10.0.0.1.nip.io``, which resolve anywhere.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A host-name label of a glob: letters, digits, "-", "_" (as addresses.py takes names), and
# the wildcards * ? [ ].
_GLOB_LABEL = re.compile(r"[a-z0-9_*?\[\]-]+")
# Digits, dots and wildcards with at least one digit, or anything with a colon.
_IP_LIKE = re.compile(r"(?=.*[0-9])[0-9.*?\[\]]+|.*:.*")


def _pattern(text: str) -> Network | tuple[str, ...]:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as err:
        if "/" in text or text.replace(".", "").isdigit():
            raise ValueError(f'invalid CIDR "{text}": {err}') from None
    lowered = text.lower()
    if _IP_LIKE.fullmatch(lowered):
        raise ValueError(f'"{text}" looks like an IP address pattern: write a CIDR such as '
                         '"10.0.0.0/8" (globs match host names only)')
    labels = tuple(lowered.split("."))
    if not all(_GLOB_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f'invalid host pattern "{text}": a host name or a glob such as '
                         '"*.svc.cluster.local" (a "*" stands for one label or part of one), '
                         'or a CIDR such as "10.0.0.0/8"')
    return labels


def check_pattern(text: str) -> str:
    """The config check of one ``probe.allowed_targets`` entry."""
    _pattern(text)
    return text


def ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` is, as it will be dialled (IPv4-mapped IPv6 as IPv4), or None for
    a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class AllowList:
    def __init__(self, patterns: tuple[str, ...]) -> None:
        parsed = [_pattern(text) for text in patterns]
        self._networks = [p for p in parsed if not isinstance(p, tuple)]
        self._globs = [p for p in parsed if isinstance(p, tuple)]

    def __bool__(self) -> bool:
        return bool(self._networks or self._globs)

    def allows(self, host: str) -> bool:
        """Whether ``host`` (a name, an IPv4 address, or an IPv6 address without brackets)
        may be connected to; request.py refuses hosts a resolver could read two ways."""
        address = ip_address(host)
        if address is not None:
            return any(address.version == network.version and address in network
                       for network in self._networks)
        labels = host.lower().split(".")
        return any(len(glob) == len(labels) and all(
            fnmatch.fnmatchcase(label, part) for label, part in zip(labels, glob))
            for glob in self._globs)
