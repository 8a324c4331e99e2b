"""The push's HTTP: `requests` sessions configured as an Airflow HTTP connection is.

A destination's connection extras, as Airflow's `HttpHook` reads them:

| extra | meaning |
| --- | --- |
| `proxies` | `{"http": URL, "https": URL}`; default: `HTTP_PROXY` / `HTTPS_PROXY` / `ALL_PROXY` |
| `verify` | `true` (default), `false`, or the path of a CA bundle; default bundle: `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE`, else certifi's |
| `cert` | a client certificate: a path, or `[certificate, key]` |
| `timeout` | seconds: one number, or `[connect, read]` |
| `trust_store` | `"system"`: the operating system's trust store (`truststore`), on this session only |

`NO_PROXY` applies to both the environment's and the extra's proxies. The environment is
read once, when the push starts (`trust_env` is off for each request: no per-request look-ups
of proxies or `.netrc`). Redirects are never followed: a 3xx is a configuration error the
engine reports with its `Location` (`requests` would turn a redirected POST into a bodiless
GET that "succeeds").
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies, should_bypass_proxies
from urllib3.exceptions import NameResolutionError, NewConnectionError

from currents_relay.delivery.partner import ConfigurationError

USER_AGENT = f"currents-relay/0.1 python-requests/{requests.__version__}"


class HttpConfigurationError(ConfigurationError):
    """A connection extra that cannot work (names the extra)."""


def _truthy(value: Any) -> bool | str:
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    return value


@dataclass(frozen=True)
class HttpSettings:
    """How to reach one endpoint: proxies, TLS trust, client certificate, timeouts."""

    proxies: dict[str, str] = field(default_factory=dict)
    verify: bool | str = True
    cert: str | tuple[str, str] | None = None
    timeout: tuple[float, float] = (5.0, 30.0)
    system_trust: bool = False

    @classmethod
    def for_endpoint(
        cls, url: str, extra: Mapping[str, Any], timeout: tuple[float, float] = (5.0, 30.0)
    ) -> HttpSettings:
        """The settings of the connection extras over the environment's, for `url`."""
        if should_bypass_proxies(url, no_proxy=None):  # NO_PROXY names the host
            proxies: dict[str, str] = {}
        elif extra.get("proxies"):
            given = extra["proxies"]
            if not isinstance(given, Mapping):
                raise HttpConfigurationError('extra.proxies must be {"https": "http://proxy:3128"}')
            proxies = {str(k): str(v) for k, v in given.items() if v}
        else:
            proxies = get_environ_proxies(url)
        verify = _truthy(extra.get("verify", True))
        if verify is True:
            verify = (
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            )
        if isinstance(verify, str) and not os.path.exists(verify):
            raise HttpConfigurationError(f"extra.verify: no CA bundle at {verify}")
        cert = extra.get("cert")
        if isinstance(cert, list | tuple):
            cert = (str(cert[0]), str(cert[1]))
        return cls(
            proxies=proxies,
            verify=verify if isinstance(verify, bool | str) else bool(verify),
            cert=cert or None,
            timeout=_timeout(extra.get("timeout"), timeout),
            system_trust=str(extra.get("trust_store", "")).lower() == "system",
        )


def _timeout(value: Any, default: tuple[float, float]) -> tuple[float, float]:
    if value is None:
        return default
    if isinstance(value, list | tuple):
        return float(value[0]), float(value[1])
    return float(value), float(value)


class _SystemTrustAdapter(HTTPAdapter):
    """Verifies servers against the operating system's trust store (`truststore`)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        import truststore

        kwargs["ssl_context"] = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        super().init_poolmanager(*args, **kwargs)


def new_session(settings: HttpSettings) -> requests.Session:
    """A session for one sending thread: one kept connection per host, no retries of its own
    (the engine retries), the environment already folded into `settings`."""
    session = requests.Session()
    session.trust_env = False
    adapter = (_SystemTrustAdapter if settings.system_trust else HTTPAdapter)(
        pool_connections=1, pool_maxsize=1, max_retries=0
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.proxies.update(settings.proxies)
    # With the system's trust store, the adapter's context verifies (requests keeps it).
    session.verify = True if settings.system_trust else settings.verify
    session.cert = settings.cert
    session.headers["User-Agent"] = USER_AGENT
    return session


def failure_kind(error: requests.RequestException) -> str:
    """A short name for a failure on the way (a key of the report's `statuses`)."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    if isinstance(reason, NameResolutionError):
        return "NameResolutionError"
    if isinstance(error, requests.exceptions.SSLError):
        return "SSLError"
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return "ConnectTimeout"
    if isinstance(error, requests.exceptions.ReadTimeout):
        return "ReadTimeout"
    if isinstance(error, requests.exceptions.ProxyError):
        return "ProxyError"
    if isinstance(reason, NewConnectionError):
        return "ConnectError"
    return "ConnectionError"


def untrusted_certificate(error: requests.RequestException) -> bool:
    """Whether a TLS failure is the server's certificate (untrusted, or for another host):
    configuration, not a passing fault."""
    text = str(error)
    return isinstance(error, requests.exceptions.SSLError) and (
        "CERTIFICATE_VERIFY_FAILED" in text or "match" in text.lower()
    )
