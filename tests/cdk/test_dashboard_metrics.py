"""Every custom metric on the dashboard and in the alarms is one its service really emits.

Two sides are checked: the dashboard's Segscale metrics use the names, namespace and dimensions defined in
runtime/common/metrics.py (with a ``Service`` that ``metrics.EMITTERS`` lists for the name), and the code of that
service passes each of those names to ``metrics.emit`` (directly or through a helper), so a graph cannot stay
silently empty after a rename on either side.
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
# Where each service's code lives: its own package, plus the shared module that wakes workers for all of them.
WORKERS_MODULE = ROOT / "runtime" / "common" / "workers.py"
SERVICE_DIRS = {
    metrics.WORKER_SERVICE: WORKER_DIR,
    metrics.API_SERVICE: ROOT / "runtime" / "api",
    metrics.RESULTS_SERVICE: ROOT / "runtime" / "results",
}
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
    """Metric names the package's code (a folder or one module) passes to ``metrics.emit`` (or to a wrapper).

    A name counts when a module that calls ``emit`` (or defines a function that does) refers to the metric's
    constant (``metrics.IMAGES_PROCESSED``, ``IMAGES_PROCESSED``) or spells its value as a dict key.
    """
    names: set[str] = set()
    for path in sorted(package.rglob("*.py") if package.is_dir() else [package]):
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
    assert {name for name, _ in found} == set(metrics.UNITS), "every custom metric has a graph"
    for name, dims in found:
        assert set(dims) == {metrics.SERVICE_DIMENSION}, (name, dims)
        assert dims[metrics.SERVICE_DIMENSION] in metrics.EMITTERS[name], (name, dims)
    wakes = {dims[metrics.SERVICE_DIMENSION] for name, dims in found if name == metrics.WORKER_WAKES}
    assert wakes == set(metrics.EMITTERS[metrics.WORKER_WAKES]), "a wake line for every waker"


def alarm_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: its one metric, or each MetricStat of its math expression."""
    props = alarm["Properties"]
    if "MetricName" in props:
        return [{k: props.get(k) for k in ("Namespace", "MetricName", "Dimensions")}]
    return [q["MetricStat"]["Metric"] for q in props.get("Metrics", []) if "MetricStat" in q]


def test_alarm_custom_metrics_are_defined_by_the_runtime(dev: Synth) -> None:
    seen = []
    for alarm in resources(dev.pipeline, "AWS::CloudWatch::Alarm").values():
        for metric in alarm_metrics(alarm):
            if metric["Namespace"] == metrics.NAMESPACE:
                name = metric["MetricName"]
                (dim,) = metric["Dimensions"]
                assert dim["Name"] == metrics.SERVICE_DIMENSION and dim["Value"] in metrics.EMITTERS[name]
                seen.append((name, dim["Value"]))
    # The job failure rate (ImagesProcessed, ImagesFailed), the stuck jobs (JobsQueuedTooLong) and the
    # no-live-worker alarm (LiveWorkers).
    assert sorted(seen) == sorted(
        [
            (metrics.IMAGES_PROCESSED, metrics.WORKER_SERVICE),
            (metrics.IMAGES_FAILED, metrics.WORKER_SERVICE),
            (metrics.JOBS_QUEUED_TOO_LONG, metrics.RESULTS_SERVICE),
            (metrics.LIVE_WORKERS, metrics.RESULTS_SERVICE),
        ]
    )


@pytest.mark.parametrize("service", sorted(SERVICE_DIRS))
def test_each_service_emits_its_dashboard_metrics(dev: Synth, service: str) -> None:
    """What the dashboard shows with ``Service=<service>`` is passed to metrics.emit by that service's code (or
    by the shared wake module its code calls)."""
    dashboard = {name for name, dims in custom_metrics(dashboard_body(dev.pipeline)) if service in dims.values()}
    assert dashboard, f"no {service} metric on the dashboard"
    emitted = emitted_names(SERVICE_DIRS[service]) | emitted_names(WORKERS_MODULE)
    missing = sorted(dashboard - emitted)
    assert not missing, f"on the dashboard but never passed to metrics.emit in {SERVICE_DIRS[service]}: {missing}"


@pytest.mark.parametrize(
    ("service", "constant"), [(metrics.WORKER_SERVICE, "WORKER_SERVICE"), (metrics.RESULTS_SERVICE, "RESULTS_SERVICE")]
)
def test_each_service_emits_with_its_service_dimension(service: str, constant: str) -> None:
    """The dashboard filters on Service=<service>, so that service's code must pass that dimension."""
    source = "\n".join(p.read_text() for p in sorted(SERVICE_DIRS[service].rglob("*.py")))
    assert re.search(rf"SERVICE_DIMENSION\s*:\s*(metrics\.)?{constant}", source)


def test_scanner_sees_only_emitted_names(tmp_path: Path) -> None:
    """The scanner itself can fail: a module that names a metric without emitting it does not count."""
    (tmp_path / "emits.py").write_text(
        "from runtime.common import metrics\ndef f():\n    metrics.emit({metrics.IMAGES_PROCESSED: 1}, {})\n"
    )
    (tmp_path / "mentions.py").write_text("from runtime.common import metrics\nX = metrics.INFERENCE_MS\n")
    assert emitted_names(tmp_path) == {metrics.IMAGES_PROCESSED}
