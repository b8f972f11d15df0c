"""Connection-string values that libpq checks only when it connects.

conninfo_to_dict (PQconninfoParse) splits a DSN without looking at the values: a port
of `notaport` parses, and libpq refuses it only at connect time, which reads as "the
database is unreachable" (exit 69, restarted forever) when it is a configuration error
(78). The options people actually write are checked here, at load time; the connect
path (db.py) classifies whatever libpq refuses beyond these the same way.

Messages name the option and may show its value: none of these options is a secret.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping

_DIGITS = re.compile(r"^\s*\d+\s*$")


def _port_list(value: str) -> str | None:
    for port in value.split(","):
        if port.strip() and not (_DIGITS.match(port) and 1 <= int(port) <= 65535):
            return f"expected a port number 1-65535 (or a comma-separated list of them), got {value!r}"
    return None


def _whole_number(value: str) -> str | None:
    return None if _DIGITS.match(value) else f"expected a whole number of at least 0, got {value!r}"


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"expected one of {', '.join(choices)}, got {value!r}"

    return check


# libpq option -> check of its value (None: fine). Choices as libpq 16/17 accept them.
CHECKS: dict[str, Callable[[str], str | None]] = {
    "port": _port_list,
    "connect_timeout": _whole_number,
    "keepalives": _whole_number,
    "keepalives_idle": _whole_number,
    "keepalives_interval": _whole_number,
    "keepalives_count": _whole_number,
    "tcp_user_timeout": _whole_number,
    "sslmode": _one_of("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": _one_of("disable", "prefer", "require"),
    "channel_binding": _one_of("disable", "prefer", "require"),
    "target_session_attrs": _one_of("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
    "load_balance_hosts": _one_of("disable", "random"),
}


def dsn_value_problems(params: Mapping[str, object]) -> list[str]:
    """What libpq would refuse in these (already parsed) parameters, one line per option."""
    problems = [f"{name}: {problem}" for name, check in CHECKS.items()
                if name in params and (problem := check(str(params[name]))) is not None]
    problems += _host_port_counts(params)
    return problems


def _host_port_counts(params: Mapping[str, object]) -> list[str]:
    """libpq takes one port for all hosts, or one per host."""
    ports = str(params.get("port") or "").split(",")
    hosts = str(params.get("host") or params.get("hostaddr") or "").split(",")
    if len(ports) > 1 and len(ports) != len(hosts):
        return [f"port: {len(ports)} ports for {len(hosts)} host(s); give one port, or one per host"]
    return []
