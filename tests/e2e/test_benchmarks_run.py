"""The benchmark scripts still run (their numbers are read by people, not asserted here).

The failover and memory benchmarks run only in the soak run (``python3 -m pytest -m soak``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(script: str, *arguments: str, timeout_s: float = 180) -> tuple[str, list[str]]:
    """Run ``bench/<script>``; its output and the first cell of every row of its tables (headers left out)."""
    finished = subprocess.run(
        [sys.executable, str(BENCH / script), *arguments], capture_output=True, text=True, timeout=timeout_s
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    lines = finished.stdout.splitlines()
    rows = [
        line
        for line, after in zip(lines, [*lines[1:], ""], strict=True)
        if line.startswith("| ") and "---" not in line and not after.startswith("| ---")
    ]
    return finished.stdout, [row.split("|")[1].strip() for row in rows]


def test_hot_path_benchmark_prints_its_table():
    _, names = run_bench("hot_path.py", "--events", "3000", "--repeat", "1", timeout_s=120)
    assert names == [
        "json.loads only",
        "msgspec decode into Event only",
        "hand-rolled prometheus-client exporter",
        "driftwarden hot path",
    ]


def test_ingest_benchmark_prints_its_table():
    output, names = run_bench("ingest.py", "--events", "5000", "--repeat", "1")
    assert names == [
        "raw kafka-python (poll and discard)",
        "raw confluent-kafka",
        "driftwarden daemon, kafka-python",
        "driftwarden daemon, confluent-kafka",
    ]
    assert "target: driftwarden daemon, kafka-python at >= 0.8x raw kafka-python" in output
    assert "target: driftwarden daemon, confluent-kafka at >= 1.5x raw kafka-python" in output


def test_drift_benchmark_prints_its_table():
    output, names = run_bench("drift.py", "--rows", "3000", "--repeat", "1")
    assert names == [
        "Evidently DataDriftPreset",
        "scipy per-column loop",
        "driftwarden score",
    ]
    assert "verdicts identical to the scipy loop's" in output
    assert "target: driftwarden score >= 30x faster than Evidently DataDriftPreset" in output
    assert "driftwarden fit with thresholds calibrated on the reference, as the daemon fits: " in output


def test_change_detector_benchmark_prints_its_table():
    output, names = run_bench("change_detectors.py", "--runs", "2", "--before", "60", "--after", "60")
    steps = ["latency +0.5 sd", "latency +1 sd", "latency +2 sd", "latency +4 sd"]
    steps += ["error ratio 2% -> 4%", "error ratio 2% -> 10%", "error ratio 2% -> 30%"]
    assert names == [f"{step}: median delay, blocks" for step in steps] + ["false changes per 1,000 stationary blocks"]
    assert "| step (200 events a block) | ours adwin | ours page_hinkley | ours cusum | river ADWIN |" in output


def test_embedding_drift_benchmark_prints_its_tables():
    output, names = run_bench("embedding_drift.py", "--quick")
    assert names == [
        "classifier",
        "classifier, unbounded",
        "Evidently model()",
        "mmd",
        "mmd, unbounded",
        "Evidently mmd()",
        "len() of each text",
        "TextDescriptors.describe",
    ]
    assert "target: each driftwarden test under 2 s per evaluation" in output


def test_quality_benchmark_prints_its_tables():
    output, names = run_bench("quality.py", "--quick")
    assert names == [
        "pipeline, calls only (feedback removed)",
        "pipeline, calls and feedback (joining)",
        "FeedbackJoin alone (pre-built tuples)",
        "minimal dict join (pre-built tuples)",
        "full at max_pending 1,000: drop the oldest",
        "full at max_pending 10,000: drop the oldest",
        "expire 1,000 entries at once",
        "expire 10,000 entries at once",
        "Pipeline.evaluate (whole tick)",
        "QualitySuite.evaluate (quality part)",
        "of which QualityStats.compute",
        "of which fairness, 10 attributes",
        "of which accuracy estimate (calibrated)",
        "FairnessStats on int codes instead of names",
        "fairlearn MetricFrame, selection rate, 10 attributes",
        "np.bincount selection rate, 10 attributes",
        "Pipeline.evaluate, no slices (whole tick)",
        "Pipeline.evaluate, 5 slice attributes of 20 groups (whole tick)",
        "of which SliceSuite.score",
        "of which the window cut into groups (split, value columns taken)",
        "of which the rows without a value or of the wrong type, counted per group",
        "bytes per stored call (measured; formula 69)",
        "calls taken per second, once full",
        "late labels joined per second (FeedbackJoin into the store)",
        "cohort update (15,000 labelled calls): seconds",
        "of which taking the cohort from the store: seconds",
        "stored calls covered per second by a cohort update",
        "pipeline, calls only, store on (default 20,000 calls): calls/s",
        "pipeline, calls only, store off (default 20,000 calls): calls/s",
        "Pipeline.evaluate (whole tick: drift and data quality)",
        "DataQualitySuite.score (20 features, 60 checks)",
        "pandas isna().mean(), shares only",
    ]
    assert "target: >= 200,000 events/s for the pipeline, calls and feedback (joining)" in output
    assert "target: the whole tick with slices under 100 ms" in output
    assert "target: Pipeline.evaluate (whole tick: drift and data quality) under 100 ms" in output
    assert "target: QualitySuite.evaluate (quality part) under 50 ms" in output
    assert "per-group outcome rates identical to fairlearn's selection rates: True" in output


def test_versions_benchmark_prints_its_table():
    output, names = run_bench("versions.py", "--quick")
    assert names == [
        "tick: versions' figures and comparisons, against the window's traffic figures",
        "hot path: events a second with versions, against the same without",
    ]
    assert "comparisons: 3" in output


def test_sequential_benchmark_prints_its_table():
    output, names = run_bench("sequential.py", "--runs", "5", "--horizon", "5000")
    assert names == ["latency x1.3", "error 2% -> 5%", "judge score -0.3 sd"]
    assert "version effects, 3 candidates vs a baseline in 100,000 events" in output


@pytest.mark.soak  # 20 s; the formula it measures is tested in tests/unit/monitor/test_memory.py
def test_memory_benchmark_prints_its_table():
    output, names = run_bench("memory.py", "--quick")
    assert names[:5] == [
        "this process at rest (not in the formula)",
        "windows, references (arrays, ids), vocabularies, models",
        "pending feedback",
        "first evaluation, peak: fitted tests, copies",
        "checkpoint, peak above the state before it",
    ]
    assert names[-2:] == [
        "baseline: driftwarden run and its consumer at rest (PSS)",
        "total: baseline, the highest peak, the report (no batch in flight)",
    ]
    assert "the formula at its worst for this config" in output


def test_producer_import_benchmark_prints_its_table():
    output, names = run_bench("producer_import.py", "--repeat", "1", timeout_s=120)
    assert names == [
        "pass (the interpreter alone)",
        "import msgspec",
        "import kafka (kafka-python)",
        "from monitor.producer import EventProducer",
        "import monitor.config (the daemon's config stack)",
    ]
    assert "the SDK adds" in output


def test_state_store_benchmark_prints_its_table():
    output, names = run_bench("state_store.py", "--quick", "--repeat", "1")
    assert names == [
        "plain file, no fsync (baseline)",
        "DirectoryStore (temp file, fsync, rename)",
        "boto3 put_object, get_object on moto (baseline)",
        "S3Store on moto",
    ]
    assert "bytes per checkpoint (8 models)" in output and "bytes per model" in output


@pytest.mark.soak  # two daemons and a raw group, each killed once: 45 s
def test_failover_benchmark_prints_its_table():
    output, names = run_bench("failover.py", "--quick")
    assert names == [
        "raw kafka-python group: the survivor owns every partition",
        "driftwarden: A exports every model B exported",
        "of which until A hands its own partitions over (B's death noticed, A checkpoints)",
        "of which the rebalance, until A is assigned every partition",
        "of which A restoring them from the bucket",
        "of which the rest (the next scrape of A's /metrics)",
    ]
    assert "ratio: driftwarden gap / raw group gap" in output
    assert "bytes per checkpoint (the group's 4 partition objects)" in output
    assert "bytes per model" in output and "MB/s" in output


def test_otlp_benchmark_prints_its_table():
    _, names = run_bench("otlp.py", "--calls", "2000", "--repeat", "1")
    assert names == [
        "driftwarden JSON events, one a message",
        "otlp_proto, 100 spans a message",
        "otlp_json, 100 spans a message",
    ]
