"""The seed account: the walk-through's state before it adds the MFA role.

root; `phoebe` (console password, access key, virtual MFA) in `administrators`, which has
AdministratorAccess attached; `bob` (console password, no MFA, no group); a multi-region
trail `management-events` that is logging.
"""

from __future__ import annotations

from typing import Any

import boto3

from guardrail_cli.local import ACCOUNT_ID, REGION

ADMINISTRATOR_ACCESS = "arn:aws:iam::aws:policy/AdministratorAccess"
TRAIL = "management-events"
TRAIL_BUCKET = f"aws-cloudtrail-logs-{ACCOUNT_ID}-management-events"


def add_user(iam: Any, name: str, *, mfa: bool, group: str | None = None, access_key: bool = False) -> None:
    iam.create_user(UserName=name)
    iam.create_login_profile(UserName=name, Password="Correct-horse-battery-1")
    if access_key:
        iam.create_access_key(UserName=name)
    if mfa:
        serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=name)["VirtualMFADevice"]["SerialNumber"]
        iam.enable_mfa_device(UserName=name, SerialNumber=serial, AuthenticationCode1="123456",
                              AuthenticationCode2="654321")
    if group:
        iam.add_user_to_group(GroupName=group, UserName=name)


def create_seed_account() -> None:
    """Build the seed account in the active moto mock."""
    iam = boto3.client("iam")
    iam.create_group(GroupName="administrators")
    iam.attach_group_policy(GroupName="administrators", PolicyArn=ADMINISTRATOR_ACCESS)
    add_user(iam, "phoebe", mfa=True, group="administrators", access_key=True)
    add_user(iam, "bob", mfa=False)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=TRAIL_BUCKET)
    cloudtrail = boto3.client("cloudtrail", region_name=REGION)
    cloudtrail.create_trail(Name=TRAIL, S3BucketName=TRAIL_BUCKET, IsMultiRegionTrail=True,
                            IncludeGlobalServiceEvents=True)
    cloudtrail.start_logging(Name=TRAIL)
