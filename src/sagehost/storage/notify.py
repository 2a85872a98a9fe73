"""Async-job notifications: publish to an SNS topic ARN or POST to an ``http(s)://`` webhook.

SNS goes through boto3 with the standard AWS configuration (so ``AWS_ENDPOINT_URL_SNS`` points
it at a local peer). The client is made per region, the topic ARN's region: a topic can only be
published to in its own region. botocore's own retries cover throttling and dropped
connections, so SNS errors are not retried again here.

A webhook gets the message as the POST body with ``Content-Type: application/json``. 2xx is
delivery. Connection failures, timeouts, 408, 429 and 5xx are retried with exponential backoff;
any other answer (a 4xx, or a redirect, which is not followed because it would turn the POST
into a GET) fails at once, since sending the same request again cannot change it.

Errors name the topic, but a webhook's query string is left out: it often carries a token.
"""

from __future__ import annotations

import asyncio
import re
import threading
import urllib.error
import urllib.request
from typing import IO, Any
from urllib.parse import urlsplit

from sagehost.core.errors import DependencyFailed, InvalidRequest

_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:([a-z0-9-]+):\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
_RETRYABLE_STATUS = frozenset({408, 429})


class TopicNotifier:
    """``Notifier`` for SNS topic ARNs and webhooks.

    A webhook gets ``attempts`` tries in all, waiting ``backoff_s``, then twice that, and so on
    between them; each try may take ``timeout_s``.
    """

    def __init__(
        self, *, timeout_s: float = 10.0, attempts: int = 4, backoff_s: float = 0.5
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    async def publish(self, topic: str, message: str) -> None:
        """Deliver ``message`` (a JSON document). Raises ``InvalidRequest`` for a topic that is
        neither an SNS topic ARN nor an ``http(s)://`` URL, ``DependencyFailed`` when delivery
        failed for good."""
        arn = _TOPIC_ARN.match(topic)
        if arn:
            await asyncio.to_thread(self._publish_sns, arn.group(1), topic, message)
            return
        parts = urlsplit(topic)
        if parts.scheme in ("http", "https") and parts.hostname and _port_ok(parts.netloc):
            await self._post_webhook(topic, message.encode())
            return
        raise InvalidRequest(
            f"Notification topic {_redacted(topic)} is neither an SNS topic ARN nor an http(s):// URL."
        )

    # --- SNS -------------------------------------------------------------------------------

    def _sns(self, region: str) -> Any:
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                import boto3  # lazily: only SNS topics pay for it

                client = boto3.session.Session().client("sns", region_name=region)
                self._clients[region] = client
            return client

    def _publish_sns(self, region: str, topic: str, message: str) -> None:
        import botocore.exceptions

        try:
            self._sns(region).publish(TopicArn=topic, Message=message)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            detail = f"{error.get('Code', '')}: {error.get('Message', '')}".strip(": ")
            raise DependencyFailed(f"Publishing to {topic} failed: {detail}.") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise DependencyFailed(f"Publishing to {topic} failed: {exc}") from None

    # --- webhooks --------------------------------------------------------------------------

    async def _post_webhook(self, url: str, body: bytes) -> None:
        delay = self._backoff_s
        attempt = 1
        while True:
            problem, retryable = await asyncio.to_thread(self._post_once, url, body)
            if problem is None:
                return
            if not retryable or attempt >= self._attempts:
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                raise DependencyFailed(f"Notifying {_redacted(url)} failed{tries}: {problem}.")
            await asyncio.sleep(delay)
            delay *= 2
            attempt += 1

    def _post_once(self, url: str, body: bytes) -> tuple[str | None, bool]:
        """One POST: ``(None, _)`` on a 2xx, else what went wrong and whether to try again."""
        opener = urllib.request.build_opener(_NoRedirects())
        # S310: publish() admitted only http(s) URLs.
        request = urllib.request.Request(  # noqa: S310
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "sagehost"},
        )
        try:
            with opener.open(request, timeout=self._timeout_s) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            status = exc.code
        except (urllib.error.URLError, OSError) as exc:
            return f"{getattr(exc, 'reason', exc)}", True
        if 200 <= status < 300:
            return None, False
        return f"HTTP {status}", status >= 500 or status in _RETRYABLE_STATUS


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None  # urllib then raises HTTPError with the 3xx status


def _port_ok(netloc: str) -> bool:
    try:
        port = urlsplit(f"//{netloc}").port  # raises on a malformed port
    except ValueError:
        return False
    return port is None or port > 0


def _redacted(url: str) -> str:
    """The URL without credentials, query or fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


__all__ = ["TopicNotifier"]
