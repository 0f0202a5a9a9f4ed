"""Credentials never shown: passwords and tokens in URIs are masked before anything prints or logs them.

Store URIs (`postgresql://user:secret@host/db`), tracking servers (`https://user:token@host`)
and data sources can all carry credentials. Every message, MLflow param, tag and artifact
that may hold a URI passes through `redact`; the CLI applies it once more to every error
it prints, as a last line of defence.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@host -> scheme://user:***@host (the user name stays: it helps debugging)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/?#@\s]*):(?P<secret>[^@/?#\s]*)@")
# scheme://token@host (a bare token as the user part of an http(s)/s3 URL)
_BARE_TOKEN = re.compile(r"(?P<scheme>(?:https?|s3|gs|wss?)://)(?P<secret>[^:/?#@\s]+)@")
# ?password=...&token=... in query strings (libpq, SQLAlchemy and presigned URLs put secrets there)
_QUERY = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pwd|secret|token|access_token|api_key|apikey|sig|signature|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token)=)(?P<secret>[^&#\s'\"]*)",
    re.IGNORECASE,
)


def redact(text: object) -> str:
    """`text` with URI passwords, bare URL tokens and secret query parameters replaced by ***."""
    s = str(text)
    s = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", s)
    s = _BARE_TOKEN.sub(lambda m: f"{m['scheme']}{MASK}@", s)
    return _QUERY.sub(lambda m: f"{m['key']}{MASK}", s)


def basic_auth_request(url: str, headers: dict[str, str] | None = None):
    """A urllib Request for `url` whose `user:password@` part (if any) travels as a Basic
    Authorization header: urllib cannot parse credentials in the host part, and MLflow's client
    and most mirrors accept them written into the URL."""
    import base64
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    headers = dict(headers or {})
    if parts.username is not None or parts.password is not None:
        pair = f"{urllib.parse.unquote(parts.username or '')}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    return urllib.request.Request(urllib.parse.urlunsplit(parts), headers=headers)
