#!/usr/bin/env python3
"""Health batch benchmark: the health job's usage aggregation over N events / M accounts in
Parquet, by DataFusion (target/release/health_bench) and by DuckDB (PyPI) on the same files with
the same SQL text, in the same script. Each engine runs in its own process, --repeat times;
wall time (median) and peak RSS (getrusage of that child) are recorded, and the aggregates'
checksums must agree. Writes the "Health batch" section of bench/RESULTS.md.

Usage: scripts/bench-health.sh [--events 10000000] [--accounts 10000] [--repeat 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "health_bench"
CACHE = ROOT / "bench" / ".cache"

DUCKDB_RUN = r"""
import json, sys, time
started = time.perf_counter()
import duckdb
imported = time.perf_counter()
queries = json.loads(sys.argv[2])
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{sys.argv[1]}/*.parquet')")
t0 = time.perf_counter()
per_account = con.execute(queries["per_account"]).fetchall()
power = dict(con.execute(queries["power"]).fetchall())
available = con.execute(queries["available"]).fetchall()
t1 = time.perf_counter()
# columns: account_id, active_users, features_used, api_calls, api_calls_previous, logins, engaged_ms, sessions, actions
names = ["active_users", "features_used", "api_calls", "api_calls_previous", "logins", "engaged_ms", "sessions", "actions"]
checksum = {"accounts": len(per_account)}
for i, name in enumerate(names, start=1):
    checksum[name] = int(sum(row[i] or 0 for row in per_account))
checksum["power_users"] = int(sum(power.values()))
print(json.dumps({"engine": "duckdb", "duckdb_version": duckdb.__version__, "aggregate_seconds": t1 - t0,
                  "import_seconds": imported - started, "checksum": checksum}))
"""


def log(message):
    print(f"[health-bench] {message}", file=sys.stderr, flush=True)


def measured(command):
    """Runs `command`, returns (parsed last JSON line of stdout, wall seconds, peak RSS MB)."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        sys.exit(f"{command[0]} failed with status {status}")
    lines = [line for line in output.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]), wall, usage.ru_maxrss / 1024


def duckdb_python():
    venv = CACHE / "duckdb-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        log("installing duckdb into bench/.cache/duckdb-venv (PyPI)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "duckdb==2.0.1"], check=True)
    return python


def replace_section(text, name, body):
    begin, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        return text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not BIN.exists():
        sys.exit(f"missing {BIN}: run scripts/bench-health.sh")
    data = CACHE / f"health-{args.events}-{args.accounts}"
    if not (data / "events-000.parquet").exists():
        log(f"generating {args.events:,} events over {args.accounts:,} accounts as Parquet in {data}")
        subprocess.run([str(BIN), "generate", "--dir", str(data), "--events", str(args.events), "--accounts", str(args.accounts)], check=True)
    parquet_mb = sum(f.stat().st_size for f in data.glob("*.parquet")) / 1e6
    queries = subprocess.run([str(BIN), "queries"], check=True, capture_output=True, text=True).stdout
    python = duckdb_python()
    # A process that only starts the interpreter and imports duckdb: its RSS is the floor under
    # DuckDB's figure (the Rust binary has no such runtime).
    _, _, duckdb_floor_mb = measured([str(python), "-c", "import duckdb, json; print(json.dumps({}))"])

    runs = {"datafusion": [], "duckdb": []}
    for i in range(args.repeat):
        # Alternate the order so neither engine always gets the warmer page cache.
        order = ["datafusion", "duckdb"] if i % 2 == 0 else ["duckdb", "datafusion"]
        for engine in order:
            if engine == "datafusion":
                result, wall, rss = measured([str(BIN), "run", "--dir", str(data)])
            else:
                result, wall, rss = measured([str(python), "-c", DUCKDB_RUN, str(data), queries])
            result.update(wall_seconds=wall, peak_rss_mb=rss)
            runs[engine].append(result)
            log(f"{engine}: aggregate {result['aggregate_seconds']:.2f} s, process {wall:.2f} s, peak RSS {rss:.0f} MB")
    df, dd = runs["datafusion"], runs["duckdb"]
    if df[0]["checksum"] != dd[0]["checksum"]:
        sys.exit(f"the engines disagree:\n datafusion {df[0]['checksum']}\n duckdb     {dd[0]['checksum']}")

    def median(rows, key):
        return statistics.median(r[key] for r in rows)

    summary = {
        "events": args.events, "accounts": args.accounts, "parquet_mb": round(parquet_mb, 1), "repeat": args.repeat,
        "datafusion": {"aggregate_s": median(df, "aggregate_seconds"), "process_s": median(df, "wall_seconds"),
                       "score_all_s": median(df, "total_seconds"), "peak_rss_mb": max(r["peak_rss_mb"] for r in df)},
        "duckdb": {"version": dd[0]["duckdb_version"], "aggregate_s": median(dd, "aggregate_seconds"),
                   "process_s": median(dd, "wall_seconds"), "peak_rss_mb": max(r["peak_rss_mb"] for r in dd),
                   "interpreter_floor_mb": duckdb_floor_mb},
        "checksum": df[0]["checksum"],
        "cpus": os.cpu_count(),
    }
    (ROOT / "bench" / "results-health.json").write_text(json.dumps(summary, indent=2) + "\n")
    d, k = summary["datafusion"], summary["duckdb"]
    ratio = d["aggregate_s"] / k["aggregate_s"]
    body = f"""## Health batch: {args.events:,} events / {args.accounts:,} accounts, DataFusion next to DuckDB

Command: `scripts/bench-health.sh --events {args.events} --accounts {args.accounts} --repeat {args.repeat}`
(bench/health_vs_duckdb.py; {summary['cpus']} cores; both engines use all of them, each in its own process,
order alternated; {parquet_mb:.0f} MB of zstd Parquet in {len(list(data.glob('*.parquet')))} files, generated once by
`health_bench generate`). The same SQL text (`crm_batch_jobs::usage::usage_queries`) runs on both; the
aggregates' checksums are equal ({summary['checksum']['accounts']:,} accounts, {summary['checksum']['sessions']:,} sessions,
{summary['checksum']['power_users']:,} power users).

| engine | usage aggregation (median) | whole process (median) | peak RSS |
| --- | --- | --- | --- |
| DataFusion (the health job's code, then scoring every account: {d['score_all_s']:.2f} s) | {d['aggregate_s']:.2f} s | {d['process_s']:.2f} s | {d['peak_rss_mb']:.0f} MB |
| DuckDB {k['version']} (Python; interpreter + import alone: {k['interpreter_floor_mb']:.0f} MB) | {k['aggregate_s']:.2f} s | {k['process_s']:.2f} s | {k['peak_rss_mb']:.0f} MB |

DataFusion / DuckDB aggregation time: **{ratio:.2f}×** (below 1 = DataFusion faster).
"""
    results_md = ROOT / "bench" / "RESULTS.md"
    results_md.write_text(replace_section(results_md.read_text(), "health-batch", body))
    log("wrote the health batch section of bench/RESULTS.md")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
