"""The owner's subscription to the alert topic: it exists, is confirmed, and filters nothing.

Alerts reach the owner only through an email subscription on the alert topic. Three quiet
ways to cut it: unsubscribe it (the link at the foot of every alert email works without any
AWS credentials), set a filter policy on it (SetSubscriptionAttributes: every alert is then
dropped), or never confirm it. `check` reads the subscription (ListSubscriptionsByTopic, then
GetSubscriptionAttributes for its filter policy) and repairs what it can:

- gone: the owner's address is subscribed again - SNS sends a fresh confirmation email, which
  is itself the notice that reaches the owner; the alert about it goes to every other channel
  subscribed to the topic (chat, a second address) and to the function's log;
- a filter policy: replaced by "{}", which SNS reads as "no filtering" (SNS Developer Guide,
  "Subscription filter policies": an empty JSON object matches every message);
- pending confirmation: reported, never re-sent on every run (that would flood the inbox;
  SNS drops an unconfirmed subscription after 3 days, and the next check subscribes again).

The setup function runs it on every deploy; the scheduled heartbeat, where deployed, runs it
on its schedule. AWS calls: 1 (ListSubscriptionsByTopic, one page per 100 subscriptions),
+1 when a confirmed subscription is found, +1 for a repair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from guardrail_core.aws import error_code, is_access_denied, is_not_found
from guardrail_core.config import Settings
from guardrail_core.findings import Action, Finding, Severity, Status

PENDING = "PendingConfirmation"  # SubscriptionArn of an unconfirmed subscription (SNS API Reference)
EMAIL_PROTOCOLS = ("email", "email-json")
NO_FILTER = "{}"

# Actions this module calls (Service Authorization Reference, Amazon SNS): ListSubscriptionsByTopic
# and Subscribe act on the topic (Subscribe also takes sns:Endpoint / sns:Protocol conditions);
# GetSubscriptionAttributes and SetSubscriptionAttributes support no resource narrower than "*".
READ_ACTIONS = frozenset({"sns:ListSubscriptionsByTopic", "sns:GetSubscriptionAttributes"})
WRITE_ACTIONS = frozenset({"sns:Subscribe", "sns:SetSubscriptionAttributes"})


@dataclass(frozen=True)
class OwnerSubscription:
    """What the topic holds for the owner's address (None when it holds nothing)."""

    arn: str  # the subscription ARN, or PENDING
    protocol: str
    filter_policy: str = ""

    @property
    def confirmed(self) -> bool:
        return self.arn != PENDING and self.arn.startswith("arn:")

    @property
    def filters(self) -> bool:
        """A filter policy that can drop alerts ("{}" or none at all drops nothing)."""
        return self.filter_policy.strip() not in ("", NO_FILTER)


@dataclass
class SubscriptionCheck:
    status: str  # "ok", "pending", "repaired", "failed", "skipped"
    detail: str
    actions: list[Action] = field(default_factory=list)

    def finding(self, settings: Settings, now: str) -> Finding | None:
        """The alert for anything but "ok" and "skipped" (it reaches every channel still subscribed)."""
        if self.status in ("ok", "skipped"):
            return None
        severity = {"repaired": Severity.CRITICAL, "failed": Severity.CRITICAL}.get(self.status, Severity.MEDIUM)
        summary = {
            "repaired": "Alert subscription repaired: confirm the email from AWS Notifications",
            "failed": "Alert subscription broken and NOT repaired",
            "pending": "Alert subscription not confirmed yet: alerts do not reach you",
        }[self.status]
        steps = [f"Confirm the subscription: open the email from AWS Notifications sent to {settings.alert_email} "
                 "and click 'Confirm subscription'.",
                 "Who removed or filtered it? Look for Unsubscribe / SetSubscriptionAttributes on the topic in "
                 "CloudTrail (an Unsubscribe from the link in an alert email carries no AWS identity).",
                 f"See the subscriptions: aws sns list-subscriptions-by-topic --topic-arn {settings.alert_topic_arn}"]
        return Finding(id="alert-subscription", severity=severity, summary=summary, account_id=settings.account_id,
                       region=settings.region, what_happened=self.detail, event_time=now, actions=self.actions,
                       mode="setup: repaired in every mode",
                       next_steps=steps if self.status != "failed" else [self.detail, *steps[1:]])


def owner_subscription(sns: Any, topic_arn: str, email: str) -> OwnerSubscription | None:
    """The owner's email subscription on the topic (confirmed first, else pending), or None."""
    found: list[OwnerSubscription] = []
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
        for sub in page.get("Subscriptions", []):
            endpoint = str(sub.get("Endpoint", ""))
            if str(sub.get("Protocol", "")) in EMAIL_PROTOCOLS and endpoint.lower() == email.lower():
                found.append(OwnerSubscription(arn=str(sub.get("SubscriptionArn", "")),
                                               protocol=str(sub.get("Protocol", ""))))
    confirmed = [s for s in found if s.confirmed]
    if confirmed:
        attributes = sns.get_subscription_attributes(SubscriptionArn=confirmed[0].arn).get("Attributes", {})
        return OwnerSubscription(confirmed[0].arn, confirmed[0].protocol, str(attributes.get("FilterPolicy", "")))
    return found[0] if found else None


def check(sns: Any, settings: Settings, *, repair: bool = True) -> SubscriptionCheck:
    """Is the owner subscribed, confirmed, unfiltered? Repair when `repair` and something is wrong.

    Never raises for AWS refusals (they become a "failed" result the caller reports); transient
    errors are raised so the caller's run is retried.
    """
    topic, email = settings.alert_topic_arn, settings.alert_email
    if not topic or not email:
        return SubscriptionCheck("skipped", "no alert topic or owner address configured")
    try:
        current = owner_subscription(sns, topic, email)
    except ClientError as exc:
        if not (is_access_denied(exc) or is_not_found(exc)):
            raise
        why = "the alert topic no longer exists" if is_not_found(exc) else f"{error_code(exc)} reading it"
        return SubscriptionCheck("failed", f"The alert subscription could not be checked: {why}. Redeploy the stack "
                                           "(sam deploy) to recreate the topic and its subscription.")
    if current is not None and current.confirmed and not current.filters:
        return SubscriptionCheck("ok", f"{email} is subscribed and confirmed")
    if current is not None and not current.confirmed:
        return SubscriptionCheck("pending", f"The subscription of {email} to the alert topic is waiting for "
                                            "confirmation: until it is confirmed, no alert reaches you.")
    if current is not None:  # confirmed, but a filter policy drops alerts
        what = (f"A filter policy was set on the alert subscription of {email} ({current.filter_policy[:200]}): "
                "alerts it does not match are dropped silently.")
        if not repair:
            return SubscriptionCheck("failed", what + " Remove it: aws sns set-subscription-attributes "
                                     f"--subscription-arn {current.arn} --attribute-name FilterPolicy "
                                     f"--attribute-value '{NO_FILTER}'")
        return _unfilter(sns, current, what)
    what = f"{email} is no longer subscribed to the alert topic: no alert reaches you by email."
    if not repair:
        return SubscriptionCheck("failed", what)
    return _resubscribe(sns, topic, email, what)


def _unfilter(sns: Any, current: OwnerSubscription, what: str) -> SubscriptionCheck:
    name = "Remove the filter policy from the owner's subscription"
    try:
        sns.set_subscription_attributes(SubscriptionArn=current.arn, AttributeName="FilterPolicy",
                                        AttributeValue=NO_FILTER)
    except ClientError as exc:
        if not is_access_denied(exc) and not is_not_found(exc):
            raise
        action = Action(name, current.arn, Status.FAILED, detail=f"{error_code(exc)}: remove it by hand")
        return SubscriptionCheck("failed", what + " The guardrail could not remove it.", [action])
    action = Action(name, current.arn, Status.SUCCEEDED, detail="FilterPolicy set to {} (no filtering)")
    return SubscriptionCheck("repaired", what + " The guardrail removed the filter policy.", [action])


def _resubscribe(sns: Any, topic: str, email: str, what: str) -> SubscriptionCheck:
    name = f"Subscribe {email} to the alert topic again"
    try:
        response = sns.subscribe(TopicArn=topic, Protocol="email", Endpoint=email, ReturnSubscriptionArn=True)
    except ClientError as exc:
        if not is_access_denied(exc) and not is_not_found(exc):
            raise
        action = Action(name, topic, Status.FAILED, detail=f"{error_code(exc)}: redeploy the stack, or subscribe "
                        f"by hand: aws sns subscribe --topic-arn {topic} --protocol email --notification-endpoint "
                        f"{email}")
        return SubscriptionCheck("failed", what + " The guardrail could not subscribe it again.", [action])
    action = Action(name, topic, Status.SUCCEEDED, detail=f"SNS sent a new confirmation email to {email} "
                    f"({str(response.get('SubscriptionArn', PENDING))[:200]}); alerts resume once it is confirmed.")
    return SubscriptionCheck("repaired", what + f" The guardrail subscribed {email} again: confirm the email from "
                                                "AWS Notifications.", [action])
