"""Evaluate IAM requests with @cloud-copilot/iam-simulate (``simulate.mjs``), all of a run in one Node process.

Why a real evaluator rather than matching strings here: action wildcards, resource wildcards, condition
operators (``StringLike`` on ``s3:prefix``, ``ArnEquals``), explicit denies in bucket and queue policies and the
same-account identity/resource policy rule are IAM's semantics, and that package implements them (and refuses an
action name IAM does not have).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.contract.calls import IamRequest

SCRIPT = Path(__file__).with_name("simulate.mjs")
ROOT = SCRIPT.parents[2]
ALLOWED = "Allowed"


@dataclass(frozen=True)
class Query:
    """One request by one principal under one set of policies (ids into the batch's policy table)."""

    principal: str
    request: IamRequest
    identity: tuple[str, ...]
    resource_policy: str | None


class Simulator:
    """Collects policies and queries, evaluates them all at once, answers from the results."""

    def __init__(self) -> None:
        self.policies: dict[str, dict[str, Any]] = {}
        self._ids: dict[str, str] = {}
        self.answers: dict[Query, str] = {}
        self.errors: dict[Query, str] = {}

    def policy(self, document: dict[str, Any]) -> str:
        """The id of ``document`` in this batch (identical documents share one)."""
        key = json.dumps(document, sort_keys=True)
        if key not in self._ids:
            self._ids[key] = f"p{len(self._ids)}"
            self.policies[self._ids[key]] = document
        return self._ids[key]

    def run(self, queries: set[Query]) -> None:
        todo = sorted((q for q in queries if q not in self.answers), key=repr)
        if not todo:
            return
        node = shutil.which("node")
        assert node, "the contract test needs Node (make install puts the simulator in node_modules)"
        payload = {
            "policies": self.policies,
            "requests": [
                {
                    "id": i,
                    "principal": q.principal,
                    "account": q.principal.split(":")[4],
                    "action": q.request.action,
                    "resource": q.request.resource,
                    "context": dict(q.request.context),
                    "identity": list(q.identity),
                    "resourcePolicy": q.resource_policy,
                }
                for i, q in enumerate(todo)
            ],
        }
        proc = subprocess.run(
            [node, str(SCRIPT)], input=json.dumps(payload), capture_output=True, text=True, cwd=ROOT, timeout=600
        )
        assert proc.returncode == 0, f"simulate.mjs failed: {proc.stderr[-3000:]}"
        for answer in json.loads(proc.stdout):
            query = todo[answer["id"]]
            self.answers[query] = answer["result"]
            if answer["result"] == "Error":
                self.errors[query] = answer["errors"]

    def allowed(self, query: Query) -> bool:
        return self.answers[query] == ALLOWED
