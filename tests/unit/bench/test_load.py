"""A smoke run of the load benchmark (seconds, tiny N), so the tool cannot rot.

It starts the real stack and checks the report is complete and consistent; the numbers
themselves are not judged here (benchmarks are run on demand, see docs/performance.md).
"""

from bench import load


def test_load_benchmark_smoke_run_reports_everything() -> None:
    result = load.run(load.SCENARIOS["smoke"], server_cores="0", generator_cores="", seed=1)
    assert result["converged"] is True
    assert result["ops_sent"] > 0
    assert result["deliveries"] > 0
    fanout = result["fanout_ms"]
    assert 0 < fanout["p50"] <= fanout["p95"] <= fanout["p99"] <= fanout["max"]
    assert result["ack_ms"]["count"] > 0
    assert set(result["server_cpu_seconds"]) >= {"gateway-0", "transform", "presence", "redis"}
    assert result["server_cpu_us_per_delivery"] > 0
    assert result["server_peak_rss_mib"]["gateway-0"] > 10
    assert "| smoke |" in load.markdown(result)
