"""The least-privilege check: every recorded call allowed by its container's role, every granted action needed.

``Contract`` places each recorded call in each deployment whose container made it, evaluates the requests against
the role's synthesized policies (plus the bucket or queue policy), and answers two questions:

- ``denials``: requests the role does not allow -> the call, the role and the statement that is missing;
- ``grant_uses``: for every action and every resource of every Allow statement, whether removing it from the
  role's policy makes some recorded request fail (needed) or not (unused). The same removal is what the test
  does to prove that it fails when a grant goes missing.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.contract.calls import Call, IamRequest, Need, Recording, needs, place
from tests.contract.deployment import PARTITION, ContainerRole
from tests.contract.simulate import Query, Simulator


@dataclass(frozen=True)
class Grant:
    """One action or one resource of one statement of a role's policy (``index``: statement number)."""

    role: ContainerRole
    policy: str
    index: int
    part: str  # "Action" or "Resource"
    value: str

    def describe(self) -> str:
        return f"{self.part} {self.value!r} of statement {self.index} of {self.policy} on {self.role.label}"


@dataclass
class Denial:
    role: ContainerRole
    request: IamRequest
    calls: list[tuple[Call, str]]
    result: str
    error: str | None = None

    def message(self) -> str:
        call, test = self.calls[0]
        suggestion = {"Effect": "Allow", "Action": self.request.action, "Resource": suggested_resource(self.request)}
        more = f" (and {len(self.calls) - 1} more call(s) of this shape)" if len(self.calls) > 1 else ""
        why = f"; the simulator says: {self.error}" if self.error else ""
        return (
            f"{call.describe()}{more}\n    recorded in {test}\n    needs {self.request.describe()}\n"
            f"    {self.role.label} answers {self.result}{why}\n"
            f"    missing statement (stacks/constructs/grants.py): {json.dumps(suggestion)}"
        )


def suggested_resource(request: IamRequest) -> str:
    """An object ARN widened to its top-level prefix (``.../uploads/*``); other ARNs as they are."""
    head = f"arn:{PARTITION}:s3:::"
    if request.resource.startswith(head) and "/" in request.resource[len(head) :]:
        bucket, _, key = request.resource[len(head) :].partition("/")
        top = key.split("/")[0]
        return f"{head}{bucket}/{top}/*" if "/" in key else f"{head}{bucket}/{key}"
    return request.resource


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass
class Contract:
    recording: Recording
    roles: list[ContainerRole]
    resource_policies: dict[str, dict[str, Any]]  # resource ARN -> policy, from every deployment
    sim: Simulator = field(default_factory=Simulator)
    unmapped: dict[Need, list[tuple[Call, str]]] = field(default_factory=dict)
    requests: dict[int, dict[IamRequest, list[tuple[Call, str]]]] = field(default_factory=dict)  # by role index

    def __post_init__(self) -> None:
        for i, role in enumerate(self.roles):
            self.requests[i] = {}
            for call, test in self.recording.calls.items():
                if call.container != role.container:
                    continue
                for need in needs(call, self.recording):
                    if need.target is None:
                        self.unmapped.setdefault(need, []).append((call, test))
                    for request in place(need, role):
                        self.requests[i].setdefault(request, []).append((call, test))

    # --- evaluation ---------------------------------------------------------------------------------------
    def _query(self, role: ContainerRole, request: IamRequest, document: dict[str, Any]) -> Query:
        owner = self._resource_policy(request.resource)
        return Query(
            principal=role.role_arn,
            request=request,
            identity=(self.sim.policy(document),),
            resource_policy=self.sim.policy(owner) if owner else None,
        )

    def _resource_policy(self, resource: str) -> dict[str, Any] | None:
        if resource in self.resource_policies:
            return self.resource_policies[resource]
        head = f"arn:{PARTITION}:s3:::"
        if resource.startswith(head):
            return self.resource_policies.get(head + resource[len(head) :].split("/")[0])
        return None

    @staticmethod
    def document(role: ContainerRole) -> dict[str, Any]:
        """All of the role's identity policies as one document (IAM unions them)."""
        return {
            "Version": "2012-10-17",
            "Statement": [s for p in role.policies for s in _as_list(p.document["Statement"])],
        }

    def denials(self, documents: dict[int, dict[str, Any]] | None = None) -> list[Denial]:
        """Requests a role does not allow; ``documents`` replaces roles' policies (by role index) to test removals."""
        documents = documents or {}
        queries = {
            i: {r: self._query(role, r, documents.get(i) or self.document(role)) for r in self.requests[i]}
            for i, role in enumerate(self.roles)
        }
        self.sim.run({q for qs in queries.values() for q in qs.values()})
        out = []
        for i, role in enumerate(self.roles):
            for request, query in queries[i].items():
                if not self.sim.allowed(query):
                    answer, error = self.sim.answers[query], self.sim.errors.get(query)
                    out.append(Denial(role, request, self.requests[i][request], answer, error))
        return out

    # --- which grants are needed -------------------------------------------------------------------------
    def grants(self, i: int) -> list[Grant]:
        role = self.roles[i]
        out = []
        for n, statement in enumerate(self.document(role)["Statement"]):
            if statement.get("Effect") != "Allow":
                continue
            policy = self._policy_name(role, statement)
            for part in ("Action", "Resource"):
                values = _as_list(statement.get(part, []))
                if part == "Resource" and len(values) < 2:
                    continue  # removing the only resource is removing the statement: its actions cover that
                out += [Grant(role, policy, n, part, str(v)) for v in values]
        return out

    @staticmethod
    def _policy_name(role: ContainerRole, statement: dict[str, Any]) -> str:
        return next((p.name for p in role.policies if statement in _as_list(p.document["Statement"])), "?")

    def without(self, i: int, grant: Grant) -> dict[str, Any]:
        """Role ``i``'s policy with one grant removed (a statement left with no action is dropped)."""
        document = copy.deepcopy(self.document(self.roles[i]))
        statement = document["Statement"][grant.index]
        statement[grant.part] = [v for v in _as_list(statement[grant.part]) if str(v) != grant.value]
        if not statement[grant.part]:
            del document["Statement"][grant.index]
        return document

    def grant_uses(self) -> dict[Grant, list[Denial]]:
        """Each grant -> the denials its removal causes (empty: no recorded call needs it)."""
        documents: list[tuple[int, Grant, dict[str, Any]]] = [
            (i, g, self.without(i, g)) for i in range(len(self.roles)) for g in self.grants(i)
        ]
        # One simulator run for every removal: queue all queries first, then read the answers.
        relevant: dict[tuple[int, Grant], list[tuple[IamRequest, Query]]] = {}
        for i, grant, document in documents:
            statement = self.document(self.roles[i])["Statement"][grant.index]
            actions = [a.lower() for a in _as_list(statement.get("Action", []))]
            affected = [r for r in self.requests[i] if any(fnmatch.fnmatchcase(r.action.lower(), a) for a in actions)]
            relevant[(i, grant)] = [(r, self._query(self.roles[i], r, document)) for r in affected]
        self.sim.run({q for pairs in relevant.values() for _, q in pairs})
        out: dict[Grant, list[Denial]] = {}
        for (i, grant), pairs in relevant.items():
            out[grant] = [
                Denial(self.roles[i], r, self.requests[i][r], self.sim.answers[q])
                for r, q in pairs
                if not self.sim.allowed(q)
            ]
        return out


def format_denials(denials: Iterable[Denial]) -> str:
    return "\n".join(d.message() for d in denials)
