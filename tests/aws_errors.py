"""AWS errors as botocore raises them, with the account and role details their real messages carry."""

from __future__ import annotations

from botocore.exceptions import ClientError

ACCOUNT = "123456789012"
ROLE = "segscale-prod-pipeline-WorkerTaskRole-1A2B3C4D5E6F"


def access_denied(operation: str = "GetObject", action: str = "s3:GetObject") -> ClientError:
    """What S3 answers a role without the permission: the message names the account, the role and the resource."""
    message = (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/a1b2c3d4 is not authorized to perform: {action} on "
        f'resource: "arn:aws:s3:::segscale-prod-data-images-{ACCOUNT}/uploads/x" because no identity-based policy '
        f"allows the {action} action"
    )
    return ClientError({"Error": {"Code": "AccessDenied", "Message": message}}, operation)


def leaks(text: str) -> bool:
    """Whether ``text`` carries any of the account details of ``access_denied``."""
    return any(secret in text for secret in (ACCOUNT, ROLE, "assumed-role", "arn:aws"))
