"""Generate the Grafana dashboards of the collab services: ``python k8s/dashboards/generate.py``.

Writes one JSON file per dashboard next to this script; the files are checked in and
``tests/unit/observability/test_dashboards.py`` fails when they differ from what this
script generates. Every panel queries the data source chosen in the ``datasource``
variable, so the dashboards import into any Grafana (the chart's sidecar loads them).

Job names are those of the chart's ServiceMonitor: ``collab-gateway``,
``collab-transform``, ``collab-presence``. Metric names are in ``docs/observability.md``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: The op latency budget: others see an edit within 200 ms (tests/integration/test_acceptance.py).
LATENCY_BUDGET_SECONDS = 0.2
RATE = "$__rate_interval"

Panel = dict[str, Any]


def target(expr: str, legend: str = "") -> dict[str, Any]:
    return {"expr": expr, "legendFormat": legend}


def quantile(q: float, histogram: str, by: str = "") -> str:
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({histogram}_bucket[{RATE}])))"


def rate(counter: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({counter}[{RATE}]))"


def timeseries(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    threshold: float | None = None,
    width: int = 12,
) -> Panel:
    defaults: dict[str, Any] = {"unit": unit, "min": 0, "custom": {"fillOpacity": 10}}
    if threshold is not None:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": "green", "value": None}, {"color": "red", "value": threshold}],
        }
        defaults["custom"]["thresholdsStyle"] = {"mode": "line"}
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets,
        "gridPos": {"w": width, "h": 8},
    }


def stat(title: str, description: str, expr: str, *, unit: str = "short") -> Panel:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        },
        "targets": [target(expr)],
        "gridPos": {"w": 6, "h": 4},
    }


def dashboard(uid: str, title: str, description: str, panels: list[Panel]) -> dict[str, Any]:
    """The dashboard around ``panels``, laid out left to right, top to bottom."""
    x = y = row_height = 0
    for number, panel in enumerate(panels, start=1):
        width, height = panel["gridPos"]["w"], panel["gridPos"]["h"]
        if x + width > 24:
            x, y, row_height = 0, y + row_height, 0
        panel["id"] = number
        panel["datasource"] = DATASOURCE
        panel["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
        for ref, query in zip("ABCDEFGHIJ", panel["targets"], strict=False):
            query.update({"refId": ref, "datasource": DATASOURCE})
        x += width
        row_height = max(row_height, height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["collab"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                    "regex": "",
                    "options": [],
                }
            ]
        },
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "title": "collab",
                "tags": ["collab"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "panels": panels,
    }


# -- dashboards ----------------------------------------------------------------------

RECEIVE_TO_COMMIT = "collab_transform_submit_to_commit_seconds"
COMMIT_TO_SEND = "collab_gateway_commit_to_send_seconds"


def overview() -> dict[str, Any]:
    latency = [
        target(quantile(q, histogram), f"p{round(q * 100)} {stage}")
        for histogram, stage in (
            (RECEIVE_TO_COMMIT, "receipt → commit"),
            (COMMIT_TO_SEND, "commit → send"),
        )
        for q in (0.5, 0.95, 0.99)
    ]
    return dashboard(
        "collab-overview",
        "Collab / Overview",
        "Who is connected, how many edits flow, how fast, and what fails.",
        [
            stat(
                "Users",
                "Distinct users connected (summed over gateways).",
                "sum(collab_gateway_users)",
            ),
            stat("Connections", "Open WebSocket connections.", "sum(collab_gateway_connections)"),
            stat("Rooms", "Documents open on some gateway.", "sum(collab_gateway_rooms)"),
            stat(
                "Ops committed/s",
                "Edits committed to document logs per second.",
                rate("collab_transform_commits_total"),
                unit="ops",
            ),
            timeseries(
                "Users and connections",
                "Distinct users and open connections, over all gateways.",
                [
                    target("sum(collab_gateway_users)", "users"),
                    target("sum(collab_gateway_connections)", "connections"),
                    target("sum(collab_gateway_rooms)", "rooms"),
                ],
            ),
            timeseries(
                "Ops per second",
                "Op messages received by gateways and ops committed by edit-transform.",
                [
                    target(rate('collab_gateway_messages_in_total{type="op"}'), "received"),
                    target(rate("collab_transform_commits_total"), "committed"),
                ],
                unit="ops",
            ),
            timeseries(
                "Op latency",
                "Quantiles of the two stages of an edit: gateway receipt to commit, and commit "
                "to fan-out at each gateway. The red line is the 200 ms budget for the whole trip.",
                latency,
                unit="s",
                threshold=LATENCY_BUDGET_SECONDS,
            ),
            timeseries(
                "Errors sent to clients",
                "error messages sent over WebSockets, by protocol error code.",
                [target(rate("collab_gateway_errors_total", "code"), "{{code}}")],
                unit="reqps",
            ),
            timeseries(
                "Services up",
                "Scrape targets answering, by job.",
                [target('sum by (job) (up{job=~"collab-.*"})', "{{job}}")],
                width=24,
            ),
        ],
    )


def connections() -> dict[str, Any]:
    return dashboard(
        "collab-connections",
        "Collab / Connection health",
        "Connects, disconnects and why, heartbeats, resumes, slow consumers, send queues.",
        [
            timeseries(
                "Connects and resumes",
                "WebSocket connections accepted, and those that resumed with since.",
                [
                    target(rate("collab_gateway_connects_total"), "connects"),
                    target(rate("collab_gateway_resumes_total"), "resumes (since)"),
                ],
                unit="reqps",
            ),
            timeseries(
                "Disconnects by reason",
                "client_closed: the client closed; connection_lost: dropped without a close; "
                "heartbeat_timeout: pings unanswered; server_closed: after the server's close "
                "(a drain); slow_consumer: send queue full; others: closed with that error.",
                [target(rate("collab_gateway_disconnects_total", "reason"), "{{reason}}")],
                unit="reqps",
            ),
            timeseries(
                "Heartbeat misses",
                "Connections closed because two pings went unanswered.",
                [
                    target(
                        rate('collab_gateway_disconnects_total{reason="heartbeat_timeout"}'),
                        "heartbeat_timeout",
                    )
                ],
                unit="reqps",
            ),
            timeseries(
                "Slow-consumer cut-offs",
                "Connections cut off (4009) because their send queue was full.",
                [target(rate("collab_gateway_slow_consumers_total"), "cut-offs")],
                unit="reqps",
            ),
            timeseries(
                "Send queue depth",
                "Frames waiting in a connection's send queue when one is written.",
                [
                    target(quantile(0.5, "collab_gateway_send_queue_depth"), "p50"),
                    target(quantile(0.99, "collab_gateway_send_queue_depth"), "p99"),
                ],
            ),
            timeseries(
                "Open connections per gateway",
                "Open WebSocket connections on each gateway.",
                [target("sum by (instance) (collab_gateway_connections)", "{{instance}}")],
            ),
            timeseries(
                "Messages in by type",
                "Client messages accepted, by type.",
                [target(rate("collab_gateway_messages_in_total", "type"), "{{type}}")],
                unit="reqps",
            ),
            timeseries(
                "Messages out by type",
                "Frames queued to clients, by type.",
                [target(rate("collab_gateway_messages_out_total", "type"), "{{type}}")],
                unit="reqps",
            ),
        ],
    )


def pipeline() -> dict[str, Any]:
    return dashboard(
        "collab-pipeline",
        "Collab / Pipeline",
        "The ingress streams, edit-transform's commits and presence.",
        [
            timeseries(
                "Stream lag",
                "Ingress entries not yet delivered to the consumer group, per stream.",
                [
                    target("max by (stream) (collab_transform_stream_lag_entries)", "{{stream}}"),
                    target("max by (stream) (collab_presence_stream_lag_entries)", "{{stream}}"),
                ],
            ),
            timeseries(
                "Pending entries",
                "Ingress entries delivered but not yet acknowledged, per stream.",
                [
                    target(
                        "max by (stream) (collab_transform_stream_pending_entries)", "{{stream}}"
                    ),
                    target(
                        "max by (stream) (collab_presence_stream_pending_entries)", "{{stream}}"
                    ),
                ],
            ),
            timeseries(
                "Oldest pending entry",
                "Age of the oldest entry delivered and not acknowledged; edit-transform takes "
                "over entries idle past its claim time.",
                [
                    target(
                        "max by (stream) (collab_transform_stream_oldest_pending_seconds)",
                        "{{stream}}",
                    ),
                    target(
                        "max by (stream) (collab_presence_stream_oldest_pending_seconds)",
                        "{{stream}}",
                    ),
                ],
                unit="s",
            ),
            timeseries(
                "Commit time",
                "The check-and-append script, and one submission from load to commit.",
                [
                    target(quantile(0.5, "collab_transform_commit_seconds"), "commit p50"),
                    target(quantile(0.99, "collab_transform_commit_seconds"), "commit p99"),
                    target(quantile(0.99, "collab_transform_process_seconds"), "process p99"),
                ],
                unit="s",
            ),
            timeseries(
                "Stage latency",
                "Gateway receipt to ingress write, receipt to commit, commit to fan-out.",
                [
                    target(
                        quantile(0.99, "collab_gateway_receive_to_forward_seconds"),
                        "p99 receipt → forward",
                    ),
                    target(quantile(0.99, RECEIVE_TO_COMMIT), "p99 receipt → commit"),
                    target(quantile(0.99, COMMIT_TO_SEND), "p99 commit → send"),
                ],
                unit="s",
                threshold=LATENCY_BUDGET_SECONDS,
            ),
            timeseries(
                "Conflicts, duplicates, take-overs",
                "Commits retried after another replica won the version, resends recognised, "
                "entries claimed from an idle consumer, processing failures, entries "
                "dead-lettered.",
                [
                    target(rate("collab_transform_version_conflicts_total"), "conflicts"),
                    target(rate("collab_transform_duplicates_total"), "duplicates"),
                    target(rate("collab_transform_claimed_total"), "claimed"),
                    target(rate("collab_transform_failed_total"), "failed"),
                    target(rate("collab_transform_dead_lettered_total"), "dead-lettered"),
                ],
                unit="ops",
            ),
            timeseries(
                "Refused submissions",
                "Submissions edit-transform refused, by error code.",
                [target(rate("collab_transform_refused_total", "code"), "{{code}}")],
                unit="ops",
            ),
            timeseries(
                "Presence",
                "Sessions in rosters, updates received by kind, and sessions expired because "
                "their gateway stopped reporting.",
                [
                    target("sum(collab_presence_participants)", "participants"),
                    target(rate("collab_presence_updates_total", "kind"), "{{kind}}/s"),
                    target(rate("collab_presence_expired_total"), "expired/s"),
                ],
            ),
        ],
    )


GATEWAY_REPLICAS = 'count(up{job="collab-gateway"})'


def autoscaling() -> dict[str, Any]:
    return dashboard(
        "collab-autoscaling",
        "Collab / Autoscaling",
        "Gateway load against the number of replicas the operator runs.",
        [
            timeseries(
                "Gateway replicas",
                "Gateways scraped; with the operator running, the replicas it wants and has.",
                [
                    target(GATEWAY_REPLICAS, "scraped"),
                    target("max(collab_operator_desired_replicas)", "desired (operator)"),
                    target("max(collab_operator_current_replicas)", "current (operator)"),
                ],
            ),
            timeseries(
                "Load per replica",
                "Connections and rooms per gateway replica, on average.",
                [
                    target(f"sum(collab_gateway_connections) / {GATEWAY_REPLICAS}", "connections"),
                    target(f"sum(collab_gateway_rooms) / {GATEWAY_REPLICAS}", "rooms"),
                ],
            ),
            timeseries(
                "Connections per gateway",
                "Open connections on each gateway instance.",
                [target("sum by (instance) (collab_gateway_connections)", "{{instance}}")],
            ),
            timeseries(
                "Rooms per gateway",
                "Documents open on each gateway instance.",
                [target("sum by (instance) (collab_gateway_rooms)", "{{instance}}")],
            ),
            timeseries(
                "Messages per gateway",
                "Client messages accepted per second on each gateway instance.",
                [
                    target(
                        f"sum by (instance) (rate(collab_gateway_messages_in_total[{RATE}]))",
                        "{{instance}}",
                    )
                ],
                unit="reqps",
            ),
            timeseries(
                "edit-transform replicas and lag",
                "edit-transform replicas scraped, and the op ingress lag they work off.",
                [
                    target('count(up{job="collab-transform"})', "replicas"),
                    target("sum(max by (stream) (collab_transform_stream_lag_entries))", "lag"),
                ],
            ),
        ],
    )


DASHBOARDS = {
    "collab-overview.json": overview,
    "collab-connections.json": connections,
    "collab-pipeline.json": pipeline,
    "collab-autoscaling.json": autoscaling,
}


def render(name: str) -> str:
    """The JSON text of dashboard file ``name``, as checked in."""
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    for name in DASHBOARDS:
        (HERE / name).write_text(render(name), encoding="utf-8")
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
