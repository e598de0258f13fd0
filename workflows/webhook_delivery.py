"""WebhookDeliveryWorkflow: one event to each of its receivers, retried with backoff for a day.

Started by DeployWorkflow as an abandoned child (`webhook_workflow_id(event.event_id)`) when
`record_step` says someone listens, so a slow or dead receiver never holds a deployment up. The
receivers are asked for when it runs and each is delivered to on its own: one that keeps failing
delays no other. A receiver that refuses (a 4xx other than 408 and 429, an address not allowed)
or still fails after a day is given up, logged and counted; the workflow then ends normally.

Deterministic and free of I/O; the activities are called through `vocabulary.activities`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from vocabulary.activities import WebhookSteps
    from vocabulary.notifications import WebhookEvent
    from vocabulary.webhook_deliveries import (
        WebhookDelivery,
        WebhookDeliveryResult,
        WebhookReceiver,
    )

RECEIVERS_STEP: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30)),
}
# 1 s, 2 s, 4 s, ... up to 10 min between attempts, for a day; each POST has 10 s to answer
# (the activity's own timeout), the start-to-close bound covers DNS and the connection too.
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
)
DELIVERY_ATTEMPT_TIMEOUT = timedelta(seconds=30)
DELIVERY_GIVE_UP_AFTER = timedelta(hours=24)

DELIVERIES_METRIC = "provisio_webhook_deliveries"


@workflow.defn
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, event: WebhookEvent) -> WebhookDeliveryResult:
        receivers = await workflow.execute_activity_method(
            WebhookSteps.webhook_receivers, event.deployment_id, **RECEIVERS_STEP
        )
        outcomes = await asyncio.gather(*(self._deliver(event, r) for r in receivers))
        result = WebhookDeliveryResult()
        for receiver, delivered in zip(receivers, outcomes, strict=True):
            (result.delivered if delivered else result.given_up).append(receiver)
        return result

    async def _deliver(self, event: WebhookEvent, receiver: WebhookReceiver) -> bool:
        try:
            await workflow.execute_activity_method(
                WebhookSteps.deliver_webhook,
                WebhookDelivery(receiver, event),
                start_to_close_timeout=DELIVERY_ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=DELIVERY_GIVE_UP_AFTER,
                retry_policy=DELIVERY_RETRY,
            )
        except ActivityError as exc:
            # Refused for good, or still failing after a day: the deployment goes on regardless.
            reason = str(exc.cause or exc)
            workflow.logger.warning(
                "webhook given up",
                extra={
                    "deployment_id": event.deployment_id,
                    "event_id": event.event_id,
                    "receiver": str(receiver),
                    "reason": reason,
                },
            )
            self._count(receiver, "given_up")
            return False
        self._count(receiver, "delivered")
        return True

    @staticmethod
    def _count(receiver: WebhookReceiver, outcome: str) -> None:
        workflow.metric_meter().create_counter(
            DELIVERIES_METRIC, "Webhook deliveries, by receiver and outcome."
        ).add(1, {"receiver": str(receiver), "outcome": outcome})
