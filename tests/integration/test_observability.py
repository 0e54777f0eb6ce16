"""Metrics, dashboards and alert rules against a real Prometheus scraping the services.

Every query of every dashboard in k8s/dashboards runs against Prometheus after a few
clients edited for a while, and must answer with data; the alert rules load and evaluate
there too.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from collab_cli.redis_server import free_port
from collab_client.connection import CollabClient

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "k8s" / "dashboards").glob("*.json"))
RULES = ROOT / "k8s" / "alerts" / "collab-rules.yaml"
#: Scrape job of each service kind, as the chart's ServiceMonitor names them.
JOBS = {"gateway": "collab-gateway", "transform": "collab-transform", "presence": "collab-presence"}
#: Published by the operator, which this stack does not run: its queries may be empty.
OPERATOR_METRICS = {"collab_operator_desired_replicas", "collab_operator_current_replicas"}
LATENCY_HISTOGRAMS = (
    "collab_transform_submit_to_commit_seconds",
    "collab_gateway_commit_to_send_seconds",
)
#: Labels that would name users, documents or connections.
IDENTIFYING_LABELS = {"doc", "document", "user", "author", "session", "client"}


@pytest.fixture
def prometheus(tool, stack, tmp_path: Path) -> Iterator[str]:
    """A Prometheus scraping every service of ``stack`` each second; its base URL."""
    binary = tool("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{service.port}" for service in stack.of(kind)]}
                ],
            }
            for kind, job in JOBS.items()
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited: {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready: {log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL) with Grafana's variables filled in."""
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", "1m").replace("$__interval", "1m")
                yield path.name, panel["title"], expr


async def edit_for(stack, seconds: float) -> float:
    """Edit from three clients in two documents; the longest insert-to-acknowledged time."""
    longest = 0.0

    async def author(doc: str, user: str) -> None:
        nonlocal longest
        async with CollabClient(stack.ws_url(doc), stack.token(user)) as client:
            await client.synced()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                client.set_cursor(0)
                started = time.monotonic()
                client.insert(0, "x")
                await client.synced()
                longest = max(longest, time.monotonic() - started)
                await asyncio.sleep(0.02)

    await asyncio.gather(author("obs-a", "ada"), author("obs-a", "lin"), author("obs-b", "kim"))
    return longest


async def wait_for_targets(prometheus: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]
        healthy = [t for t in targets["activeTargets"] if t["health"] == "up"]
        if len(healthy) == count:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"targets not up: {targets}")


async def test_every_dashboard_query_has_data(stack, prometheus: str) -> None:
    await wait_for_targets(prometheus, len(stack.services))
    longest = await edit_for(stack, seconds=6)
    await asyncio.sleep(2.5)  # two more scrapes after the last edit

    failures = []
    tolerated = set()
    for name, title, expr in dashboard_queries():
        if query(prometheus, expr):
            continue
        metrics = set(re.findall(r"collab_[a-z_]+", expr))
        if metrics and metrics <= OPERATOR_METRICS:
            tolerated |= metrics
            continue
        failures.append(f"{name} :: {title} :: {expr}")
    assert not failures, "queries without data:\n" + "\n".join(failures)
    assert tolerated <= OPERATOR_METRICS

    for histogram in LATENCY_HISTOGRAMS:
        for q in (0.5, 0.99):
            expr = f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket[1m])))"
            [sample] = query(prometheus, expr)
            value = float(sample["value"][1])
            assert 0 < value < longest, f"{expr} = {value}, longest edit {longest:.4f} s"

    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    evaluated = [rule for group in rules for rule in group["rules"]]
    assert {rule["name"] for rule in evaluated} >= {"CollabOpLatencyHigh", "CollabServiceDown"}
    assert all(rule["health"] == "ok" for rule in evaluated), evaluated


def test_no_label_names_a_user_or_document(stack) -> None:
    for service in stack.services:
        text = httpx.get(f"http://127.0.0.1:{service.port}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                assert not IDENTIFYING_LABELS & set(sample.labels), (service.name, sample)


def metric(stack, line: str) -> bool:
    return line in httpx.get(f"{stack.http()}/metrics", timeout=5).text.splitlines()


async def test_heartbeat_misses_and_session_errors_are_counted(stack_factory) -> None:
    # Pings every 200 ms; two unanswered close the connection (PROTOCOL.md, "Liveness").
    stack = stack_factory(COLLAB_GATEWAY_HEARTBEAT_MS="200")
    ws = await websockets.connect(stack.ws_url("beats"), ping_interval=None, close_timeout=1)
    try:
        await ws.send(json.dumps({"type": "hello", "token": stack.token(), "client": "c"}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "heartbeat", "timestamp": 1}))
        assert json.loads(await ws.recv())["type"] == "heartbeat"
        await ws.send("not json")
        assert json.loads(await ws.recv())["code"] == "bad_message"
        # Stop reading: the client's pongs to the gateway's pings stop with it.
        ws.transport.pause_reading()
        deadline = time.monotonic() + 10
        expected = 'collab_gateway_disconnects_total{reason="heartbeat_timeout"} 1.0'
        while not metric(stack, expected):
            assert time.monotonic() < deadline, "no heartbeat_timeout disconnect counted"
            await asyncio.sleep(0.1)
    finally:
        ws.transport.abort()
    assert metric(stack, 'collab_gateway_errors_total{code="bad_message"} 1.0')
    assert metric(stack, 'collab_gateway_messages_out_total{type="error"} 1.0')
    assert metric(stack, 'collab_gateway_messages_in_total{type="heartbeat"} 1.0')
    assert metric(stack, 'collab_gateway_messages_out_total{type="heartbeat"} 1.0')
    assert metric(stack, 'collab_gateway_disconnects_total{reason="client_closed"} 0.0')
