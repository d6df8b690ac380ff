"""Least privilege, proven: each container's recorded AWS calls against the IAM policy CDK synthesizes for its role.

moto accepts every request, so without this a missing grant shows up only in AWS (as a logged AccessDenied and a
feature that silently does nothing). These tests run last in the session and read what every other test's
containers did (tests/contract/recording.py), in each deployment variant: Fargate and Lambda API, S3 models.
"""

from __future__ import annotations

import warnings

import pytest

from runtime.common.awscalls import CONTAINERS
from tests.contract.calls import needs, setting_value
from tests.contract.check import Contract, Grant, format_denials

pytestmark = [pytest.mark.contract, pytest.mark.cdk]

# Grants no recorded call needs, kept on purpose: (container, deployment kind, action or resource) -> why.
ACCEPTED_UNUSED: dict[tuple[str, str, str], str] = {
    ("api", "lambda", "logs:CreateLogStream"): "the Lambda service writes the function's logs with its role",
    ("api", "lambda", "logs:PutLogEvents"): "the Lambda service writes the function's logs with its role",
    ("results", "ecs", "s3:AbortMultipartUpload"): "S3TextStream aborts a failed multipart export; its test "
    "(tests/results/test_s3stream.py) calls it as a library, without a deployment's settings to place the call",
}


class UnusedGrant(UserWarning):
    """A statement (action or resource) of a container's role that no recorded call needs."""


class UnmappedCall(UserWarning):
    """A recorded call whose resource no configuration on its stack names, so no deployment can place it."""


def _key(grant: Grant) -> tuple[str, str, str]:
    return (grant.role.container, grant.role.kind, grant.value)


def test_every_container_is_recorded_in_every_deployment(contract: Contract) -> None:
    """The recorder ran in every container's processes, and every deployed container role was evaluated."""
    assert set(CONTAINERS) <= contract.recording.containers(), (
        f"no AWS calls recorded for {sorted(set(CONTAINERS) - contract.recording.containers())}"
    )
    variants = {r.variant for r in contract.roles}
    for variant in variants:
        deployed = {r.container for r in contract.roles if r.variant == variant}
        assert deployed == set(CONTAINERS), f"{variant}: containers found in the template: {sorted(deployed)}"
    for i, role in enumerate(contract.roles):
        assert contract.requests[i], f"no recorded call applies to {role.label}"


def test_every_recorded_call_names_a_resource_its_container_is_given(contract: Contract) -> None:
    """A call on a setting CDK gives the container nowhere cannot work in AWS. Calls that cannot be tied to a
    configuration (library code a unit test calls with names of its own) are listed as a warning."""
    if contract.unmapped:
        examples = [f"{calls[0][0].describe()} in {calls[0][1]}" for calls in list(contract.unmapped.values())[:8]]
        warnings.warn(
            UnmappedCall(f"{len(contract.unmapped)} call(s) not evaluated, e.g.:\n" + "\n".join(examples)),
            stacklevel=1,
        )
    for call in contract.recording.calls:
        for need in needs(call, contract.recording):
            if need.target is None:
                continue
            given = [
                r
                for r in contract.roles
                if r.container == call.container and setting_value(r.settings, need.target.setting) is not None
            ]
            assert given, (
                f"{call.describe()} uses setting {need.target.setting!r}, which no deployment sets on the "
                f"{call.container} container"
            )


def test_every_recorded_call_is_allowed_by_its_role(contract: Contract) -> None:
    denials = contract.denials()
    assert not denials, f"{len(denials)} recorded request(s) the deployed role does not allow:\n" + format_denials(
        denials
    )


def test_every_grant_is_needed_or_an_accepted_exception(contract: Contract) -> None:
    """Unused grants are reported as warnings; an accepted exception that is needed (or gone) is a failure."""
    uses = contract.grant_uses()
    unused = [g for g, denials in uses.items() if not denials]
    for grant in unused:
        if _key(grant) not in ACCEPTED_UNUSED:
            warnings.warn(UnusedGrant(f"no recorded call needs {grant.describe()}"), stacklevel=1)
    unused_keys = {_key(g) for g in unused}
    stale = sorted(set(ACCEPTED_UNUSED) - unused_keys)
    assert not stale, f"accepted exceptions that are no longer unused grants (remove them): {stale}"


def test_removing_a_needed_grant_from_any_role_fails_the_check(contract: Contract) -> None:
    """For every role: take away one action a recorded call needs, and the check above fails naming it."""
    uses = contract.grant_uses()
    for i, role in enumerate(contract.roles):
        needed = [g for g, denials in uses.items() if denials and g.role is role and g.part == "Action"]
        assert needed, f"no granted action of {role.label} is needed by a recorded call"
        grant = needed[0]
        denials = contract.denials({i: contract.without(i, grant)})
        message = format_denials(denials)
        assert denials and all(d.role is role for d in denials), message
        assert role.label in message and grant.value in message and "missing statement" in message
