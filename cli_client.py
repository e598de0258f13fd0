"""The CLI's way to Provisio: the HTTP API and a bearer token, like the web UI and any other
client. It never touches the database or Temporal, so it works from any machine that can reach
the API.

Where things come from: the server from `--url`, else `PROVISIO_URL`, else
http://127.0.0.1:8000; the token from `PROVISIO_TOKEN`, else the file `provisio login` wrote
(`~/.config/provisio/tokens.json`, mode 0600, one token per server URL, so a token is never sent
to a server it was not issued by).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_URL = "http://127.0.0.1:8000"
SIGN_IN_AGAIN = "sign in again (provisio login), or set PROVISIO_TOKEN"
# An operation's answer waits for its first step to be recorded by the workflow (up to 30 s).
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# The event stream sends a comment after 15 s of silence: a minute without a byte is a dead link.
STREAM_TIMEOUT = httpx.Timeout(10.0, read=60.0)


def _config_dir() -> Path:
    return Path.home() / ".config" / "provisio"


class ClientSettings(BaseSettings):
    """The client's settings. Not the server's `Settings`: a person at a terminal needs none of
    the server's (and must not be handed its secrets); the env prefix is the same."""

    model_config = SettingsConfigDict(env_prefix="PROVISIO_", extra="ignore")

    url: str = DEFAULT_URL
    token: str = Field(default="", repr=False)
    config_dir: Path = Field(default_factory=_config_dir)


class ApiError(Exception):
    """The API refused a request, or could not be reached. `str()` says what to do about it."""

    def __init__(self, message: str, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail

    @classmethod
    def from_response(cls, response: httpx.Response, url: str) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        detail = body.get("detail") if isinstance(body, dict) else None
        text = detail if isinstance(detail, str) else response.reason_phrase
        status = response.status_code
        if status == 401:
            message = (
                f"sign-in refused: {text}"
                if response.request.url.path == "/api/auth/token"
                else f"not signed in, or the sign-in expired: {SIGN_IN_AGAIN}"
            )
        elif status == 403:
            message = f"not allowed: {text}"
        elif status == 404:
            message = f"{text} (it does not exist, or it is not yours)"
        elif status == 409:
            message = f"refused: {text}"
        elif status == 422 and isinstance(detail, list):
            message = "the request is not valid:\n" + "\n".join(
                f"  {field_path(problem.get('loc', []))}: {problem.get('msg', problem)}"
                for problem in detail
                if isinstance(problem, dict)
            )
        elif status == 503:
            retry = response.headers.get("retry-after")
            message = f"the API at {url} is unavailable: {text}" + (
                f" (retry in {retry} s)" if retry else ""
            )
        else:
            message = f"HTTP {status}: {text}"
        return cls(message, status, detail)


def field_path(loc: list[Any]) -> str:
    """FastAPI's error location without its leading "body"/"query"."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "header", "path"):
        parts = parts[1:]
    return ".".join(str(part) for part in parts) or "request"


class TokenStore:
    """Tokens from `provisio login`, one per server URL, in a file only its owner can read."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "tokens.json"

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def get(self, url: str) -> str | None:
        return self._read().get(normalise(url))

    def put(self, url: str, token: str) -> None:
        tokens = self._read()
        tokens[normalise(url)] = token
        self._write(tokens)

    def forget(self, url: str) -> bool:
        tokens = self._read()
        if tokens.pop(normalise(url), None) is None:
            return False
        self._write(tokens)
        return True

    def _write(self, tokens: dict[str, str]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created 0600 from the start (never readable by others, not even for a moment), then
        # renamed over the old file.
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, json.dumps(tokens, indent=2).encode())
        finally:
            os.close(fd)
        os.replace(temporary, self.path)


def normalise(url: str) -> str:
    return url.rstrip("/")


def token_expiry(token: str) -> datetime | None:
    """When a JWT says it expires (read, not verified: the server decides)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (IndexError, KeyError, TypeError, ValueError):
        return None


@dataclass
class StreamEvent:
    """One Server-Sent Event of `GET /api/deployments/{id}/events`."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class ApiClient:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = normalise(url)
        headers = {"Accept": "application/json", "User-Agent": "provisio-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if not response.is_success:
            raise ApiError.from_response(response, self.url)
        return response

    def pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[list[Any]]:
        """Each page of a list the API pages with `Link: <…>; rel="next"`, in order, until a
        page has no next. Only a link on this server is followed (a path), so the token never
        goes elsewhere, and a link that points back at the page just read ends the walk."""
        url: str | None = path
        while url is not None:
            response = self._send("GET", url, params=params)
            yield response.json()
            url, params = next_page(response), None  # the link carries the whole query

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def events(self, path: str, last_event_id: int) -> Iterator[StreamEvent]:
        """The stream's events after `last_event_id`, until the server closes it (after `end`,
        or its five-minute limit). Nothing when the deployment is final and has nothing new."""
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(last_event_id)}
        try:
            with self.http.stream("GET", path, headers=headers, timeout=STREAM_TIMEOUT) as response:
                if response.status_code == 204:
                    return
                if not response.is_success:
                    response.read()
                    raise ApiError.from_response(response, self.url)
                yield from parse_event_stream(response.iter_lines())
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: httpx.HTTPError) -> ApiError:
        if isinstance(exc, httpx.ConnectError):
            return ApiError(
                f"cannot reach the Provisio API at {self.url} ({exc}); "
                "is it running? (--url or PROVISIO_URL sets where to look)"
            )
        if isinstance(exc, httpx.TimeoutException):
            return ApiError(f"the Provisio API at {self.url} did not answer in time")
        return ApiError(f"the request to {self.url} failed: {exc}")


def next_page(response: httpx.Response) -> str | None:
    """The `rel="next"` link of a page when it is a path on the same server and not the page
    itself; else None."""
    link = response.links.get("next", {}).get("url")
    if not link or not link.startswith("/") or link.startswith("//"):
        return None
    return None if link == response.url.raw_path.decode() else link


def parse_event_stream(lines: Iterator[str]) -> Iterator[StreamEvent]:
    """text/event-stream lines into events; comments (the keep-alive) and `retry:` skipped."""
    event, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data or event != "message":
                yield StreamEvent(event, "\n".join(data), event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
