"""The one HTTP client of every notification: Alertmanager, the webhook and the retraining trigger.

A POST with a timeout that follows no redirect and never raises for what
the network or the receiver did: :meth:`HttpClient.post` returns an
:class:`Answer` that says whether the receiver took the payload (2xx),
rejected it as invalid (400, 422: sending the same bytes again cannot
succeed), or should be tried again (anything else, no answer included).

Redirects: urllib would follow a 301, 302 or 303 to a POST as a GET without
the body, and report the GET's 200 as if the payload had been delivered. So a
3xx is a failure like a 5xx, retried with backoff and logged with its
status; the redirect target is not logged (a ``Location`` may carry a token).

Log lines name a receiver by :func:`origin` only: a webhook URL is often
the credential itself (Slack, Teams and many others put the token in its path).
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

__all__ = ["Answer", "HttpClient", "origin"]

#: Answers after which sending the same bytes again cannot succeed: the receiver judged the payload invalid
#: (Alertmanager answers 400 when some alerts fail validation, having stored the valid ones).
REJECTED_STATUSES = frozenset({400, 422})
_MAX_DETAIL = 300


@dataclass(frozen=True)
class Answer:
    """What a POST came to: the HTTP ``status`` (0 when no answer came) and, unless 2xx, a short reason."""

    status: int
    error: str = ""

    @property
    def ok(self) -> bool:
        """The receiver took the payload."""
        return 200 <= self.status < 300

    @property
    def rejected(self) -> bool:
        """The receiver judged the payload itself invalid: retrying the same bytes is pointless."""
        return self.status in REJECTED_STATUSES


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Turns every 3xx into an ``HTTPError`` instead of a GET to the new location."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class HttpClient:
    """POSTs with a per-request timeout and no redirects; see the module docstring.

    Parameters
    ----------
    timeout_s : float
        Connect and read timeout of one request.

    Examples
    --------
    >>> answer = HttpClient(timeout_s=1.0).post("http://127.0.0.1:9/", b"{}", {})  # nothing listens on port 9
    >>> answer.status, answer.ok, answer.rejected, answer.error.startswith("ConnectionRefusedError")
    (0, False, False, True)
    """

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(_NoRedirect)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST ``body`` to ``url``; never raises for a network or HTTP failure."""
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                response.read()
                return Answer(response.status)
        except urllib.error.HTTPError as error:
            with error:
                return Answer(error.code, _describe_status(error))
        except urllib.error.URLError as error:
            reason = error.reason
            return Answer(0, f"{type(reason).__name__}: {reason}" if isinstance(reason, Exception) else str(reason))
        except (OSError, http.client.HTTPException) as error:
            return Answer(0, f"{type(error).__name__}: {error}")


def _describe_status(error: urllib.error.HTTPError) -> str:
    text = f"HTTP {error.code} {error.reason}".strip()
    if 300 <= error.code < 400:
        return f"{text} (redirects are not followed)"
    try:
        detail = error.read(_MAX_DETAIL).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException):
        detail = ""
    return f"{text}: {detail}" if detail else text


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, for log lines: no user, path or query, which may hold a secret.

    Examples
    --------
    >>> origin("https://hooks.slack.com/services/T000/B000/XXXXSECRET")
    'https://hooks.slack.com:443'
    >>> origin("http://user:pass@[::1]:8080/alerts?token=abc")
    'http://[::1]:8080'
    """
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}:{port}" if port else f"{parts.scheme}://{host}"
