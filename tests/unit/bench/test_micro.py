"""A smoke run of the micro-benchmark, so the tool cannot rot (its numbers are not checked)."""

from bench import micro


def test_micro_benchmark_runs_and_prints_every_row(capsys) -> None:
    micro.main(["--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| operation")
    names = [line.split("|")[1].strip() for line in lines[2:]]
    assert "decode + validate a typical op message" in names
    assert any(name.startswith("apply small op to 1000 KB") for name in names)
    for line in lines[2:]:
        p50 = float(line.split("|")[2])
        assert p50 > 0
