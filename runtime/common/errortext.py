"""Error texts safe to show to API clients: what went wrong, never what a library said about our account.

botocore's messages name accounts, roles, ARNs and endpoints ("User: arn:aws:sts::123456789012:assumed-role/...
is not authorized to perform: s3:GetObject on resource: ..."). Job records and API responses are read by every
key holder, so they carry a stable class and a reason built from the AWS error *code* and the operation; the
full text goes to the logs only (the caller logs it next to the job or request it belongs to).
"""

from __future__ import annotations

import re

from botocore.exceptions import ClientError

_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # AccessDenied, SlowDown, 404, ThrottlingException, ...


def aws_error_summary(exc: BaseException) -> str:
    """``"AccessDenied on GetObject"`` for an AWS error, else the class name (``EndpointConnectionError``)."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        code = code if _CODE.match(code) else "unknown error"
        operation = getattr(exc, "operation_name", "")
        return f"{code} on {operation}" if operation and _CODE.match(operation) else code
    return type(exc).__name__
