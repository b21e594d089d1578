"""The owner's alert subscription: checked and repaired on the local account (setup runs it).

The local stack's topic carries the owner's email subscription as the template declares it
(owner@example.com); each test breaks it the way an attacker or a forwarded email would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from guardrail_cli.local import LocalGuardrail
from guardrail_cli.testing import baseline_account, inject_errors
from guardrail_core import subscription
from guardrail_core.config import load_settings
from guardrail_core.subscription import OwnerSubscription

OWNER = "owner@example.com"


@pytest.fixture
def account() -> Iterator[LocalGuardrail]:
    with baseline_account() as local:
        yield local


def sns() -> Any:
    return boto3.client("sns", region_name="us-east-1")


def topic(local: LocalGuardrail) -> str:
    return local.stack.ref("AlertTopic")


def owners(local: LocalGuardrail) -> list[dict[str, Any]]:
    subs = sns().list_subscriptions_by_topic(TopicArn=topic(local))["Subscriptions"]
    return [s for s in subs if s["Endpoint"] == OWNER]


def setup_run(local: LocalGuardrail, payload: dict[str, Any] | None = None) -> Any:
    return local.invoke("SetupFunction", payload or {})


def test_a_healthy_subscription_costs_two_reads_and_no_email(account: LocalGuardrail) -> None:
    inv = setup_run(account)
    assert inv.result["subscription"]["status"] == "ok"
    sns_calls = [c.name for c in inv.calls if c.service == "sns"]
    assert sns_calls == ["sns:ListSubscriptionsByTopic", "sns:GetSubscriptionAttributes"]


def test_a_removed_subscription_is_subscribed_again_and_said_through_the_topic(account: LocalGuardrail) -> None:
    (sub,) = owners(account)
    sns().unsubscribe(SubscriptionArn=sub["SubscriptionArn"])  # the link in a forwarded alert email
    assert owners(account) == []
    chat = sns().subscribe(TopicArn=topic(account), Protocol="https", Endpoint="https://chat.example.net/hook")

    inv = setup_run(account)

    assert inv.result["subscription"]["status"] == "repaired"
    (subscribe,) = [c for c in inv.calls if c.name == "sns:Subscribe"]
    assert subscribe.params == {"TopicArn": topic(account), "Protocol": "email", "Endpoint": OWNER,
                                "ReturnSubscriptionArn": True}
    assert len(owners(account)) == 1  # a fresh subscription: SNS emails a new confirmation
    (mail,) = [n for n in inv.notifications if "subscription" in n["subject"].lower()]
    assert mail["subject"].startswith("[CRITICAL] Alert subscription repaired")
    text = " ".join(mail["message"].split())
    assert f"{OWNER} is no longer subscribed" in text and "confirm the email from AWS Notifications" in text
    assert chat["SubscriptionArn"]  # the channel still working receives it (it is published to the topic)
    # Next run: nothing more to do.
    again = setup_run(account)
    assert again.result["subscription"]["status"] == "ok"
    assert [c for c in again.calls if c.name == "sns:Subscribe"] == []


def test_a_filter_policy_is_removed(account: LocalGuardrail) -> None:
    (sub,) = owners(account)
    sns().set_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"], AttributeName="FilterPolicy",
                                      AttributeValue='{"severity": ["never"]}')
    inv = setup_run(account)
    assert inv.result["subscription"]["status"] == "repaired"
    attributes = sns().get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"]
    assert attributes.get("FilterPolicy", "{}") == "{}"
    assert [c.params["AttributeValue"] for c in inv.calls if c.name == "sns:SetSubscriptionAttributes"] == ["{}"]


def test_a_dry_run_repairs_nothing(account: LocalGuardrail) -> None:
    (sub,) = owners(account)
    sns().unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
    inv = setup_run(account, {"dry_run": True})
    assert inv.result["subscription"]["status"] == "failed"
    assert [c for c in inv.calls if c.name in ("sns:Subscribe", "sns:SetSubscriptionAttributes")] == []
    assert owners(account) == []


def test_refused_repair_is_reported_never_a_failed_deploy(account: LocalGuardrail) -> None:
    (sub,) = owners(account)
    sns().unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
    with inject_errors({"Subscribe": "AccessDenied"}):
        inv = setup_run(account)
    assert inv.error is None and inv.result["compliant"] is True
    assert inv.result["subscription"]["status"] == "failed"
    (mail,) = [n for n in inv.notifications if "subscription" in n["subject"].lower()]
    assert "aws sns subscribe --topic-arn" in " ".join(mail["message"].split())


class PendingSns:
    """An SNS client whose topic holds the owner's unconfirmed subscription (the first deploy)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def get_paginator(self, name: str) -> Any:
        calls = self.calls

        class Pages:
            def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
                calls.append(name)
                return [{"Subscriptions": [{"SubscriptionArn": "PendingConfirmation", "Protocol": "email",
                                            "Endpoint": OWNER.upper(), "TopicArn": kwargs["TopicArn"]}]}]

        return Pages()

    def subscribe(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("subscribe")
        return {}


def test_a_pending_confirmation_is_reported_never_resent() -> None:
    settings = load_settings({"ACCOUNT_ID": "123456789012", "ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t",
                              "ALERT_EMAIL": OWNER})
    stub = PendingSns()
    result = subscription.check(stub, settings)
    assert result.status == "pending" and stub.calls == ["list_subscriptions_by_topic"]
    finding = result.finding(settings, "2026-11-30T00:00:00Z")
    assert finding is not None and finding.severity.value == "MEDIUM"


def test_filter_semantics() -> None:
    assert not OwnerSubscription("arn:aws:sns:us-east-1:1:t:x", "email", "").filters
    assert not OwnerSubscription("arn:aws:sns:us-east-1:1:t:x", "email", " {} ").filters
    assert OwnerSubscription("arn:aws:sns:us-east-1:1:t:x", "email", '{"a": ["b"]}').filters
    assert not OwnerSubscription("PendingConfirmation", "email").confirmed
