"""Every custom metric on the dashboard and in the alarms is one the worker really emits.

Two sides are checked: the dashboard's Segscale metrics use the names, namespace and dimensions defined in
runtime/common/metrics.py, and the worker's code passes each of those names to ``metrics.emit`` (directly or
through a helper), so a graph cannot stay silently empty after a rename on either side.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from runtime.common import metrics
from tests.cdk.conftest import ROOT, Synth, SynthFn, resources

pytestmark = pytest.mark.cdk

WORKER_DIR = ROOT / "runtime" / "worker"
NAME_TO_CONST = {
    value: n
    for n in dir(metrics)
    if n.isupper() and isinstance(value := getattr(metrics, n), str) and value in metrics.UNITS
}


def dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))


def metric_rows(body: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for widget in body["widgets"]:
        for row in widget.get("properties", {}).get("metrics", []):
            rows.append(row)
    return rows


def custom_metrics(body: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """(name, dimensions) of every row in our namespace; a "." repeats the previous row's value."""
    out, previous = [], []
    for row in metric_rows(body):
        fields = [f for f in row if not isinstance(f, dict)]
        fields = [previous[i] if f == "." and i < len(previous) else f for i, f in enumerate(fields)]
        previous = fields
        if fields and fields[0] == metrics.NAMESPACE:
            dims = dict(zip(fields[2::2], fields[3::2], strict=True))
            out.append((fields[1], dims))
    return out


def emitted_names(package: Path) -> set[str]:
    """Metric names the package's code passes to ``metrics.emit`` (or to a wrapper that calls it).

    A name counts when a module that calls ``emit`` (or defines a function that does) refers to the metric's
    constant (``metrics.IMAGES_PROCESSED``, ``IMAGES_PROCESSED``) or spells its value as a dict key.
    """
    names: set[str] = set()
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        calls_emit = any(
            isinstance(n, ast.Call)
            and (
                (isinstance(n.func, ast.Attribute) and n.func.attr in {"emit", "emf_record"})
                or (isinstance(n.func, ast.Name) and n.func.id in {"emit", "emf_record"})
            )
            for n in ast.walk(tree)
        )
        if not calls_emit:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in NAME_TO_CONST.values():
                names.add(getattr(metrics, node.attr))
            elif isinstance(node, ast.Name) and node.id in NAME_TO_CONST.values():
                names.add(getattr(metrics, node.id))
            elif isinstance(node, ast.Dict):
                names |= {k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in metrics.UNITS}
    return names


@pytest.mark.parametrize("variant", ["dev", "lambda"])
def test_dashboard_custom_metrics_are_defined_by_the_runtime(synth: SynthFn, variant: str) -> None:
    found = custom_metrics(dashboard_body(synth(variant).pipeline))
    assert {name for name, _ in found} == set(metrics.UNITS), "every worker metric has a graph"
    for name, dims in found:
        assert dims == {metrics.SERVICE_DIMENSION: metrics.WORKER_SERVICE}, (name, dims)


def test_alarm_custom_metrics_are_defined_by_the_runtime(dev: Synth) -> None:
    seen = 0
    for alarm in resources(dev.pipeline, "AWS::CloudWatch::Alarm").values():
        for query in alarm["Properties"].get("Metrics", []):
            stat = query.get("MetricStat")
            if stat and stat["Metric"]["Namespace"] == metrics.NAMESPACE:
                seen += 1
                assert stat["Metric"]["MetricName"] in metrics.UNITS
                assert stat["Metric"]["Dimensions"] == [
                    {"Name": metrics.SERVICE_DIMENSION, "Value": metrics.WORKER_SERVICE}
                ]
    assert seen == 2  # the job failure rate: ImagesProcessed and ImagesFailed


def test_the_worker_emits_every_dashboard_metric(dev: Synth) -> None:
    dashboard = {name for name, _ in custom_metrics(dashboard_body(dev.pipeline))}
    emitted = emitted_names(WORKER_DIR)
    missing = sorted(dashboard - emitted)
    assert not missing, f"on the dashboard but never passed to metrics.emit in runtime/worker: {missing}"


def test_the_worker_emits_with_the_service_dimension() -> None:
    """The dashboard filters on Service=worker, so the worker must pass that dimension."""
    source = "\n".join(p.read_text() for p in sorted(WORKER_DIR.rglob("*.py")))
    assert re.search(r"SERVICE_DIMENSION\s*:\s*(metrics\.)?WORKER_SERVICE", source)


def test_scanner_sees_only_emitted_names(tmp_path: Path) -> None:
    """The scanner itself can fail: a module that names a metric without emitting it does not count."""
    (tmp_path / "emits.py").write_text(
        "from runtime.common import metrics\ndef f():\n    metrics.emit({metrics.IMAGES_PROCESSED: 1}, {})\n"
    )
    (tmp_path / "mentions.py").write_text("from runtime.common import metrics\nX = metrics.INFERENCE_MS\n")
    assert emitted_names(tmp_path) == {metrics.IMAGES_PROCESSED}
