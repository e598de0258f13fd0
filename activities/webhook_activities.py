"""WebhookDeliveryWorkflow's steps: who receives an event now, and one signed POST to one of them.

The receiver's URL and secret are read at each attempt (never passed through Temporal, so
neither lands in its history), its address checked after DNS and then connected to as checked.
Error messages name the receiver and the outcome, never the URL: they are kept in history too.
"""

from __future__ import annotations

import time

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db.session import SessionMaker, create_autocommit_sessionmaker
from db.webhook_reads import Webhook, owner_webhook
from domain.webhook_signing import event_body, signed_headers
from domain.webhook_urls import IPAddress, RefusedAddress, UnresolvedHost, resolve_receiver
from settings import Settings
from vocabulary.activities import WebhookSteps
from vocabulary.webhook_deliveries import (
    WEBHOOK_REFUSED,
    WEBHOOK_UNDELIVERED,
    WebhookDelivery,
    WebhookReceiver,
)

DELIVERY_TIMEOUT_S = 10.0
# Worth another attempt: the receiver is busy, slow or restarting.
RETRYABLE_STATUSES = frozenset({408, 429})
USER_AGENT = "Provisio-Webhooks/1"


class WebhookActivities(WebhookSteps):
    def __init__(self, sessionmaker: SessionMaker, settings: Settings) -> None:
        self._one_statement = create_autocommit_sessionmaker(sessionmaker.kw["bind"])
        self._settings = settings

    @activity.defn
    async def webhook_receivers(self, deployment_id: int) -> list[WebhookReceiver]:
        receivers = []
        if await self._webhook(WebhookReceiver.OWNER, deployment_id) is not None:
            receivers.append(WebhookReceiver.OWNER)
        if self._settings.webhook_url:
            receivers.append(WebhookReceiver.GLOBAL)
        return receivers

    @activity.defn
    async def deliver_webhook(self, delivery: WebhookDelivery) -> int:
        event, receiver = delivery.event, delivery.receiver
        webhook = await self._webhook(receiver, event.deployment_id)
        if webhook is None:
            # The URL was removed since the event: the receiver no longer listens.
            raise _refused(f"the {receiver} receiver has no webhook URL any more")
        try:
            addresses = await resolve_receiver(
                webhook.url, allow_private=self._settings.webhook_allow_private
            )
        except UnresolvedHost:
            raise _undelivered(f"the {receiver} receiver's host does not resolve") from None
        except RefusedAddress:
            # Checked when the URL was set: its name resolves elsewhere now (or the setting
            # changed). Not sent, and not tried again.
            raise _refused(
                f"the {receiver} receiver's host has a non-public address, which"
                " PROVISIO_WEBHOOK_ALLOW_PRIVATE does not allow"
            ) from None
        body = event_body(event)
        headers = signed_headers(webhook.secret, event, body, int(time.time()))
        try:
            status = await _post(webhook.url, addresses[0], body, headers)
        except httpx.InvalidURL:
            # Accepted by our rules, not by httpx's: no attempt would ever do better.
            raise _refused(f"the {receiver} receiver's URL is not one httpx can send to") from None
        except httpx.TimeoutException:
            raise _undelivered(f"the {receiver} receiver did not answer in time") from None
        except httpx.TransportError as exc:
            raise _undelivered(
                f"the {receiver} receiver could not be reached ({type(exc).__name__})"
            ) from None
        log_extra = {
            "deployment_id": event.deployment_id,
            "event_id": event.event_id,
            "receiver": str(receiver),
            "status_code": status,
        }
        if 200 <= status < 300:
            activity.logger.info("webhook delivered", extra=log_extra)
            return status
        if status >= 500 or status in RETRYABLE_STATUSES:
            raise _undelivered(f"the {receiver} receiver answered {status}")
        activity.logger.warning("webhook refused by its receiver", extra=log_extra)
        raise _refused(f"the {receiver} receiver answered {status}")

    async def _webhook(self, receiver: WebhookReceiver, deployment_id: int) -> Webhook | None:
        if receiver is WebhookReceiver.GLOBAL:
            url, secret = self._settings.webhook_url, self._settings.webhook_secret
            return Webhook(url, secret) if url else None
        async with self._one_statement() as session:
            return await owner_webhook(session, deployment_id)


async def _post(url: str, address: IPAddress, body: bytes, headers: dict[str, str]) -> int:
    """POST to the address just checked, not to whatever a second lookup would return; the Host
    header and TLS (SNI, the certificate's name) still name the URL's host. No proxies from the
    environment (they would bypass the check), no redirects (one could point anywhere: a 3xx is
    an answer like a 4xx), and the answer's body is never read (nothing in it is used)."""
    target = httpx.URL(url)
    headers = {**headers, "Host": target.netloc.decode("ascii"), "User-Agent": USER_AGENT}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    async with (
        httpx.AsyncClient(
            timeout=DELIVERY_TIMEOUT_S, trust_env=False, follow_redirects=False
        ) as http,
        http.stream(
            "POST",
            target.copy_with(host=str(address)),
            content=body,
            headers=headers,
            extensions=extensions,
        ) as response,
    ):
        return response.status_code


def _refused(message: str) -> ApplicationError:
    return ApplicationError(message, type=WEBHOOK_REFUSED, non_retryable=True)


def _undelivered(message: str) -> ApplicationError:
    return ApplicationError(message, type=WEBHOOK_UNDELIVERED)
