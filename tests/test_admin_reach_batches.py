"""The nobody-reaches-admin check reads members' MFA devices in concurrent batches (issue 13 (7)):
a group of 30 with the only device on the 26th member is found in two round trips, and a group
past the cap is "not fully checked", never "nobody has MFA"."""

from __future__ import annotations

from guardrail_core import admin_reach


def test_the_device_in_the_second_batch_is_found() -> None:
    asked: list[str] = []

    def has(member: str) -> bool:
        asked.append(member)
        return member == "u25"

    names = [f"u{i:02}" for i in range(30)]
    assert admin_reach.first_member_with_mfa(names, has) == ("u25", True)
    assert sorted(asked) == names  # two batches of at most BATCH, the second stops the search


def test_nobody_with_mfa_is_an_answer_only_when_every_member_was_asked() -> None:
    assert admin_reach.first_member_with_mfa([f"u{i}" for i in range(30)], lambda m: False) == (None, True)
    over = admin_reach.MAX_MEMBER_CHECKS + 10
    assert admin_reach.first_member_with_mfa([f"u{i}" for i in range(over)], lambda m: False) == (None, False)


def test_the_first_batch_stops_the_search() -> None:
    asked: list[str] = []

    def has(member: str) -> bool:
        asked.append(member)
        return member == "a"

    assert admin_reach.first_member_with_mfa(["a", *[f"u{i}" for i in range(40)]], has) == ("a", True)
    assert len(asked) == admin_reach.BATCH
