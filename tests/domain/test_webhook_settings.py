"""The global webhook's settings are checked before the worker starts, like the callback secret."""

from __future__ import annotations

import pytest

from domain.webhook_urls import WebhookSettingsError, check_webhook_settings
from settings import Settings
from worker import run_worker

SECRET = "global-webhook-secret-" + "g" * 32


def test_no_global_url_needs_no_secret() -> None:
    check_webhook_settings("", "", allow_private=False)


@pytest.mark.parametrize(
    ("url", "secret", "allow_private", "complaint"),
    [
        ("https://93.184.215.14/hooks", "", False, "PROVISIO_WEBHOOK_SECRET"),
        ("https://93.184.215.14/hooks", "s" * 31, False, "PROVISIO_WEBHOOK_SECRET"),
        ("ftp://93.184.215.14/hooks", SECRET, False, "http or https"),
        ("https://user:pw@93.184.215.14/hooks", SECRET, False, "user name or password"),
        ("http://10.0.0.5/hooks", SECRET, False, "PROVISIO_WEBHOOK_ALLOW_PRIVATE"),
    ],
)
def test_an_unusable_global_webhook_is_refused(
    url: str, secret: str, allow_private: bool, complaint: str
) -> None:
    with pytest.raises(WebhookSettingsError, match=complaint):
        check_webhook_settings(url, secret, allow_private=allow_private)


def test_a_private_global_receiver_is_accepted_when_allowed() -> None:
    check_webhook_settings("http://10.0.0.5/hooks", SECRET, allow_private=True)
    # A name is resolved at each delivery, not at start (DNS may be down for a moment).
    check_webhook_settings("https://hooks.example.com/provisio", SECRET, allow_private=False)


async def test_the_worker_refuses_to_start_with_a_url_and_no_secret(settings: Settings) -> None:
    # Before it connects anywhere: every event for the global receiver would go unsigned.
    unsigned = settings.model_copy(update={"webhook_url": "https://93.184.215.14/hooks"})
    with pytest.raises(WebhookSettingsError, match="PROVISIO_WEBHOOK_SECRET"):
        await run_worker(unsigned)
