#!/usr/bin/env python3
"""Runs the quick benchmark suite and writes bench/RESULTS.md.

Every throughput figure is reported as a ratio to a baseline measured in the same run on the
same machine: a bare hyper server that reads the body and answers 204. On machines with two or
more cores the server under test is pinned to core 0 and the load generator to core 1, so both
servers get the same single core.

Called by scripts/bench.sh after the release build; expects target/release/{crm,baseline,
loadgen,probe,seed_store}. Pass --quick for shorter runs.
"""

import glob
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
QUICK = "--quick" in sys.argv
FULL = "--full" in sys.argv
DURATION = 5 if QUICK else 8
WARMUP = 1 if QUICK else 2
PASSWORD = "bench-admin-password"
CORES = os.cpu_count() or 1
SERVER_CPU = ["taskset", "-c", "0"] if CORES >= 2 and shutil.which("taskset") else []
CLIENT_CPU = ["taskset", "-c", "1"] if CORES >= 2 and shutil.which("taskset") else []
ENV = dict(os.environ, RUST_LOG="warn", CRM_ADMIN_PASSWORD=PASSWORD)
# The probes are one client sending thousands of API requests a minute: the API's per-address and
# per-user rate limits (which would answer 429) are off for the servers they measure.
NO_API_LIMITS = ["--api-rate-limit-ip", "0", "--api-rate-limit-user", "0"]

results = {}
notes = []


def log(message):
    print(f"[bench] {message}", flush=True)


class Server:
    """A server process whose stdout announces `listening on http://ADDR`."""

    def __init__(self, args, pin=True):
        self.proc = subprocess.Popen((SERVER_CPU if pin else []) + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV, text=True)
        self.address = None
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            match = re.search(r"listening on http://(\S+)", line)
            if match:
                self.address = match.group(1)
                break
        if not self.address:
            self.stop()
            raise RuntimeError(f"{args[0]} did not start")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def peak_rss_mb(self):
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
        except (OSError, AttributeError):
            return None

    def metrics(self):
        text = urllib.request.urlopen(f"http://{self.address}/metrics", timeout=5).read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    values[name] = float(value)
                except ValueError:
                    pass
        return values

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def loadgen(address, mix="single", connections=64, rate=0, duration=DURATION, site="demo", pool=50_000):
    args = CLIENT_CPU + [str(BIN / "loadgen"), "--target", address, "--mix", mix, "--connections", str(connections),
                         "--rate", str(rate), "--duration-secs", str(duration), "--warmup-secs", str(WARMUP),
                         "--site", site, "--pool", str(pool), "--json"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return json.loads(out)


def wrk(address, body_file, duration=DURATION):
    if not shutil.which("wrk"):
        return None
    script = Path(tempfile.mkdtemp()) / "post.lua"
    body = Path(body_file).read_text().replace("\\", "\\\\").replace('"', '\\"')
    script.write_text(f'wrk.method = "POST"\nwrk.body = "{body}"\nwrk.headers["Content-Type"] = "text/plain"\n'
                      'wrk.headers["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"\n')
    out = subprocess.run(CLIENT_CPU + ["wrk", "-t1", "-c64", f"-d{duration}s", "-s", str(script), f"http://{address}/v1/events"],
                         capture_output=True, text=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else None


def bootstrap(data_dir):
    """First start of `crm up` on a data dir (creates the admin and the demo site), then stop."""
    server = Server([str(BIN / "crm"), "up", "--listen", "127.0.0.1:0", "--data-dir", data_dir])
    server.stop()


def ratio(value, base):
    return round(value / base, 3) if value and base else None


def percentile_ms(latency, key):
    return round(latency[key] / 1000, 2)


def first_probe(report):
    """The warm-up probe, sent right after the servers start, is reported apart: it also waits for
    the pipeline to get going (on Kafka, the consumer group to form), which is not the steady
    state the percentiles describe."""
    warmup = report.get("warmup_ms") or []
    return f"; the first probe after start (not in the percentiles) took {warmup[0]:.0f} ms" if warmup else ""


def microbenches():
    log("microbenchmarks (criterion)")
    env = dict(os.environ)
    subprocess.run(["cargo", "bench", "--locked", "-p", "crm-bench", "--bench", "pipeline"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    figures = {}
    for path in glob.glob(str(ROOT / "target" / "criterion" / "*" / "*" / "new" / "estimates.json")):
        parts = Path(path).parts
        name = f"{parts[-4]}/{parts[-3]}"
        benchmark = json.loads(Path(path).read_text())
        bench_meta = json.loads((Path(path).parent / "benchmark.json").read_text())
        elements = (bench_meta.get("throughput") or {}).get("Elements") or 1
        ns = benchmark["mean"]["point_estimate"] / elements
        figures[name] = {"ns_per_element": round(ns, 1), "per_second": round(1e9 / ns)}
    return figures


def main():
    for binary in ["crm", "baseline", "loadgen", "probe", "seed_store"]:
        if not (BIN / binary).exists():
            sys.exit(f"missing {BIN / binary}: run scripts/bench.sh")
    work = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    sample = work / "pageview.json"
    sample.write_text(json.dumps({"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": "wrk-visitor",
                                  "url": "https://bench.example/pricing", "referrer": "https://www.google.com/",
                                  "title": "Pricing", "viewport": {"w": 1280, "h": 800}, "lang": "en-US"}))

    log("baseline: bare hyper, 204")
    base = Server([str(BIN / "baseline"), "--threads", "1"])
    results["floor"] = loadgen(base.address)
    results["floor_realistic"] = loadgen(base.address, mix="realistic")
    results["floor_wrk"] = wrk(base.address, sample)
    # 256 connections: the floor for the Kafka figure below, whose throughput is bounded by
    # requests in flight over the broker's acknowledgement latency rather than by CPU.
    results["floor_c256"] = loadgen(base.address, connections=256)
    base.stop()

    log("collector → embedded log (crm ingest, fsync)")
    ingest_dir = str(work / "ingest")
    bootstrap(ingest_dir)
    ingest = Server([str(BIN / "crm"), "ingest", "--listen", "127.0.0.1:0", "--data-dir", ingest_dir,
                     "--rate-limit-ip", "0", "--rate-limit-site", "0"])
    results["ingest"] = loadgen(ingest.address)
    results["ingest_realistic"] = loadgen(ingest.address, mix="realistic")
    half = int(results["ingest"]["requests_per_sec"] / 2)
    results["ingest_half"] = loadgen(ingest.address, rate=half)
    results["ingest_wrk"] = wrk(ingest.address, sample)
    results["ingest_rss_mb"] = ingest.peak_rss_mb()
    ingest.stop()

    kafka = os.environ.get("CRM_BENCH_KAFKA_BROKERS")
    if kafka:
        log("collector → Kafka (tansu, acks=all, idempotent)")
        kafka_dir = str(work / "kafka-ingest")
        bootstrap(kafka_dir)
        prefix = f"bench{int(time.time())}"
        kafka_ingest = Server([str(BIN / "crm"), "ingest", "--listen", "127.0.0.1:0", "--data-dir", kafka_dir,
                               "--event-log", "kafka", "--kafka-brokers", kafka, "--kafka-topic-prefix", prefix,
                               "--kafka-partitions", "4", "--rate-limit-ip", "0", "--rate-limit-site", "0"])
        results["kafka"] = loadgen(kafka_ingest.address)
        results["kafka_half"] = loadgen(kafka_ingest.address, rate=max(int(results["kafka"]["requests_per_sec"] / 2), 1))
        results["kafka_c256"] = loadgen(kafka_ingest.address, connections=256)
        results["kafka_rss_mb"] = kafka_ingest.peak_rss_mb()
        kafka_ingest.stop()
    else:
        notes.append("Kafka not measured: CRM_BENCH_KAFKA_BROKERS unset (scripts/bench.sh starts tansu)")

    clickhouse_url = os.environ.get("CRM_BENCH_CLICKHOUSE_URL")
    if kafka and clickhouse_url:
        log("end to end over Kafka + ClickHouse (separate ingest, process and api processes)")
        run_id = f"{int(time.time())}"
        store_args = ["--store", "clickhouse", "--clickhouse-url", clickhouse_url, "--clickhouse-database", f"bench_e2e_{run_id}"]
        log_args = ["--event-log", "kafka", "--kafka-brokers", kafka, "--kafka-topic-prefix", f"e2e{run_id}", "--kafka-partitions", "4"]
        api = Server([str(BIN / "crm"), "api", "--listen", "127.0.0.1:0", "--data-dir", str(work / "k-api")] + store_args + NO_API_LIMITS)
        scaled_ingest = Server([str(BIN / "crm"), "ingest", "--listen", "127.0.0.1:0", "--data-dir", str(work / "k-ingest"),
                                "--rate-limit-ip", "0", "--rate-limit-site", "0"] + store_args + log_args)
        scaled_process = Server([str(BIN / "crm"), "process", "--listen", "127.0.0.1:0", "--data-dir", str(work / "k-process")] + store_args + log_args)
        scaled_probe = {}

        def run_scaled_probe():
            out = subprocess.run(CLIENT_CPU + [str(BIN / "probe"), "--target", f"http://{scaled_ingest.address}", "--api", f"http://{api.address}",
                                  "--password", PASSWORD, "--site", "demo", "queryable", "--count", "60", "--interval-ms", "50",
                                  "--warmup", "1"],
                                 capture_output=True, text=True)
            if out.returncode == 0:
                scaled_probe.update(json.loads(out.stdout.strip().splitlines()[-1]))
            else:
                first_line = (out.stderr.strip().splitlines() or ["(no output)"])[0]
                notes.append(f"Kafka + ClickHouse queryable probe failed: {first_line}")

        probe_thread = threading.Thread(target=run_scaled_probe)
        probe_thread.start()
        before_scaled = scaled_process.metrics()
        scaled_started = time.time()
        results["kafka_e2e_load"] = loadgen(scaled_ingest.address, mix="batch", connections=16, rate=100, duration=DURATION, pool=100_000)
        probe_thread.join()
        scaled_processed = scaled_process.metrics().get("crm_processor_events_total", 0) - before_scaled.get("crm_processor_events_total", 0)
        results["kafka_e2e_processed_per_sec"] = round(scaled_processed / (time.time() - scaled_started))
        results["kafka_e2e_queryable"] = scaled_probe
        for server in (scaled_ingest, scaled_process, api):
            server.stop()

    log("end to end: crm up under sustained batch load, with the queryable probe")
    up_dir = str(work / "up")
    up = Server([str(BIN / "crm"), "up", "--listen", "127.0.0.1:0", "--data-dir", up_dir,
                 "--rate-limit-ip", "0", "--rate-limit-site", "0"] + NO_API_LIMITS)
    before = up.metrics()
    probe_out = {}

    def run_probe():
        out = subprocess.run(CLIENT_CPU + [str(BIN / "probe"), "--target", f"http://{up.address}", "--password", PASSWORD,
                              "--site", "demo", "queryable", "--count", "100", "--interval-ms", "20", "--warmup", "1"],
                             capture_output=True, text=True)
        if out.returncode == 0:
            probe_out.update(json.loads(out.stdout.strip().splitlines()[-1]))
        else:
            notes.append(f"queryable probe failed: {(out.stderr.strip().splitlines() or ['(no output)'])[0]}")

    e2e_rate = 1000 if QUICK else 2500
    started = time.time()
    probe_thread = threading.Thread(target=run_probe)
    probe_thread.start()
    results["e2e_load"] = loadgen(up.address, mix="batch", connections=32, rate=e2e_rate, duration=DURATION * 2, pool=200_000)
    load_seconds = time.time() - started
    after = up.metrics()
    probe_thread.join()
    drain_started = time.time()
    while after.get("crm_eventlog_consumer_lag", 0) > 0 and time.time() - drain_started < (15 if QUICK else 60):
        time.sleep(0.5)
        after = up.metrics()
    processed = after.get("crm_processor_events_total", 0) - before.get("crm_processor_events_total", 0)
    results["e2e"] = {
        "offered_events_per_sec": results["e2e_load"]["events_per_sec"],
        "processed_events": processed,
        "processed_events_per_sec": round(processed / (load_seconds + (time.time() - drain_started))),
        "drain_seconds_after_load": round(time.time() - drain_started, 2),
        "final_lag": after.get("crm_eventlog_consumer_lag"),
    }
    results["queryable"] = probe_out
    results["up_rss_mb"] = up.peak_rss_mb()
    up.stop()

    log("API latency with 1 M visitors in the store")
    api_dir = str(work / "api")
    bootstrap(api_dir)
    visitors = 200_000 if QUICK else 1_000_000
    seeded = subprocess.run([str(BIN / "seed_store"), "--data-dir", api_dir, "--site", "demo", "--visitors", str(visitors)],
                            check=True, capture_output=True, text=True).stdout.strip()
    api = Server([str(BIN / "crm"), "api", "--listen", "127.0.0.1:0", "--data-dir", api_dir] + NO_API_LIMITS)
    out = subprocess.run(CLIENT_CPU + [str(BIN / "probe"), "--target", f"http://{api.address}", "--password", PASSWORD,
                          "--site", "demo", "api", "--visitors", str(visitors), "--requests", "2000"],
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    results["api"] = json.loads(out)
    results["api_visitors"] = visitors
    results["api_seed"] = seeded
    api.stop()

    log(f"crm up with {visitors:,} visitors under load: peak RSS, then kill -9 mid-load and recovery")
    up_args = [str(BIN / "crm"), "up", "--listen", "127.0.0.1:0", "--data-dir", api_dir, "--rate-limit-ip", "0", "--rate-limit-site", "0"] + NO_API_LIMITS
    loaded = Server(up_args)
    before = loaded.metrics()
    started = time.time()
    results["up_seeded_load"] = loadgen(loaded.address, mix="batch", connections=32, rate=e2e_rate, duration=DURATION * 2, pool=200_000)
    processed = loaded.metrics().get("crm_processor_events_total", 0) - before.get("crm_processor_events_total", 0)
    results["up_seeded"] = {"visitors": visitors, "processed_events_per_sec": round(processed / (time.time() - started)), "peak_rss_mb": loaded.peak_rss_mb()}
    # SIGKILL in the middle of a second load: once the log has grown by a few seconds' worth (the
    # load generator builds its beacon pool first), then the load generator sees the connections drop.
    second = subprocess.Popen(CLIENT_CPU + [str(BIN / "loadgen"), "--target", loaded.address, "--mix", "batch", "--connections", "32", "--rate", str(e2e_rate),
                                            "--duration-secs", str(DURATION * 4), "--warmup-secs", "0", "--site", "demo", "--pool", "200000", "--json"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    offset_before = loaded.metrics().get("crm_eventlog_next_offset", 0)
    deadline = time.time() + 120
    while time.time() < deadline and loaded.metrics().get("crm_eventlog_next_offset", 0) == offset_before:
        time.sleep(0.2)
    time.sleep(DURATION / 2)
    loaded.proc.kill()
    loaded.proc.wait()
    second.wait()
    restarted_at = time.time()
    recovered = Server(up_args)
    recovery = {"listening_s": round(time.time() - restarted_at, 2)}
    deadline = time.time() + 300
    while time.time() < deadline and "ready_s" not in recovery:
        try:
            if urllib.request.urlopen(f"http://{recovered.address}/readyz", timeout=5).status == 200:
                recovery["ready_s"] = round(time.time() - restarted_at, 2)
        except OSError:
            time.sleep(0.1)
    # The lag gauge reads 0 until the processor's first poll: caught up means a batch (the replay of
    # what was acknowledged but not durable at the kill) has been processed and the lag is 0.
    while time.time() < deadline and "caught_up_s" not in recovery:
        figures = recovered.metrics()
        if figures.get("crm_processor_batch_duration_seconds_count", 0) > 0 and figures.get("crm_eventlog_consumer_lag", 1) == 0:
            recovery["caught_up_s"] = round(time.time() - restarted_at, 2)
        else:
            time.sleep(0.2)
    results["recovery_seeded"] = recovery
    recovered.stop()

    log("stores: bulk write and overview latency (embedded vs ClickHouse)")
    results["stores"] = []
    if not clickhouse_url:
        notes.append("ClickHouse store not measured: CRM_BENCH_CLICKHOUSE_URL unset (scripts/bench.sh starts a server)")
    for events in ([200_000] if QUICK else [1_000_000]) + ([10_000_000] if FULL else []):
        args = [str(BIN / "store_bench"), "--events", str(events), "--queries", "10"]
        # The embedded store at every size; its first design (redb) only up to 1 M events.
        args += ["--embedded-dir", str(work / f"store-{events}")]
        if events <= 1_000_000:
            args += ["--redb-dir", str(work / f"redb-{events}")]
        if clickhouse_url:
            args += ["--clickhouse-url", clickhouse_url]
        out = subprocess.run(SERVER_CPU + args, check=True, capture_output=True, text=True).stdout
        results["stores"] += [json.loads(line) for line in out.strip().splitlines()]

    log("knowledge-base search: hybrid (embedding + BM25) against BM25 alone, same process")
    model = subprocess.run([str(ROOT / "scripts" / "fetch-model.sh")], check=True, capture_output=True, text=True).stdout.strip()
    articles = 1_000 if QUICK else 10_000
    out = subprocess.run(SERVER_CPU + [str(BIN / "kb_search_bench"), "--model", model, "--articles", str(articles), "--queries", "200"],
                         check=True, capture_output=True, text=True).stdout
    results["kb_search"] = json.loads(out.strip().splitlines()[-1])

    results["micro"] = microbenches()

    log("tracker size")
    tracker = (ROOT / "widgets" / "tracking.js").read_bytes()
    import gzip
    results["tracker_raw_gzip"] = len(gzip.compress(tracker, 9))
    # What websites get: widgets/build.sh's pinned terser build (it also checks the budget).
    minified = None
    if subprocess.run([str(ROOT / "widgets" / "build.sh")], capture_output=True).returncode in (0, 1):
        minified = len(gzip.compress((ROOT / "widgets" / "dist" / "tracking.min.js").read_bytes(), 9))
    results["tracker_min_gzip"] = minified

    shutil.rmtree(work, ignore_errors=True)
    write_results()


def machine():
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kib / 1048576:.0f} GiB"
    except (OSError, AttributeError):
        pass
    return f"{CORES} cores ({model}), {mem}, {platform.system()} {platform.release()}"


def write_results():
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    floor = results["floor"]["requests_per_sec"]
    ingest = results["ingest"]
    half = results["ingest_half"]
    e2e = results["e2e"]
    q = results.get("queryable") or {}
    api = results["api"]
    micro = results["micro"]
    enrich = micro.get("processor/enrich_sessionise_score", {})

    def verdict(ok):
        return "met" if ok else "**missed**"

    lines = []
    add = lines.append
    add("# Benchmark results")
    add("")
    add(f"- Machine: {machine()}")
    add(f"- Commit: `{commit}`{' (with uncommitted changes)' if dirty else ''}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    add(f"- Command: `scripts/bench.sh{' --quick' if QUICK else ''}{' --full' if FULL else ''}` (release build; servers pinned to core 0, load generator to core 1"
        f"{'' if SERVER_CPU else ' — not pinned: taskset or a second core missing'})")
    add("- Every throughput is also given as a ratio to the bare-hyper floor measured in this same run.")
    add("")
    add("## Collector")
    add("")
    add("| what | req/s | events/s | ratio to floor | p50 | p99 | p99.9 |")
    add("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, key in [("bare hyper floor (reads body, 204), single events", "floor"),
                       ("bare hyper floor, realistic mix", "floor_realistic"),
                       ("collector → embedded log (fsync), single events", "ingest"),
                       ("collector → embedded log, realistic mix (batches, gzip)", "ingest_realistic")]:
        r = results[key]
        base = floor if key in ("floor", "ingest") else results["floor_realistic"]["requests_per_sec"]
        add(f"| {label} | {r['requests_per_sec']:.0f} | {r['events_per_sec']:.0f} | {ratio(r['requests_per_sec'], base)} | "
            f"{percentile_ms(r['latency'], 'p50_us')} ms | {percentile_ms(r['latency'], 'p99_us')} ms | {percentile_ms(r['latency'], 'p999_us')} ms |")
    add(f"| collector at half its max rate ({half['target_rate']} req/s) | {half['requests_per_sec']:.0f} | {half['events_per_sec']:.0f} | "
        f"{ratio(half['requests_per_sec'], floor)} | {percentile_ms(half['latency'], 'p50_us')} ms | {percentile_ms(half['latency'], 'p99_us')} ms | "
        f"{percentile_ms(half['latency'], 'p999_us')} ms |")
    if "kafka" in results:
        for label, key, base in [("collector → Kafka (tansu, acks=all), single events", "kafka", floor),
                                 ("collector → Kafka at half its max rate", "kafka_half", floor),
                                 ("bare hyper floor, 256 connections", "floor_c256", results["floor_c256"]["requests_per_sec"]),
                                 ("collector → Kafka, 256 connections", "kafka_c256", results["floor_c256"]["requests_per_sec"])]:
            r = results[key]
            add(f"| {label} | {r['requests_per_sec']:.0f} | {r['events_per_sec']:.0f} | {ratio(r['requests_per_sec'], base)} | "
                f"{percentile_ms(r['latency'], 'p50_us')} ms | {percentile_ms(r['latency'], 'p99_us')} ms | {percentile_ms(r['latency'], 'p999_us')} ms |")
    add("")
    add(f"Outside view (`wrk -t1 -c64`, one 300-byte pageview): floor {results['floor_wrk'] or 'n/a'} req/s, "
        f"collector {results['ingest_wrk'] or 'n/a'} req/s (ratio {ratio(results['ingest_wrk'], results['floor_wrk'])}).")
    add(f"Statuses under max load: collector {ingest['statuses']}, errors {ingest['errors']}.")
    add("")
    add("## End to end (`crm up`: collector + processor + API in one process on one core)")
    add("")
    add(f"- Offered load: {results['e2e_load']['requests_per_sec']:.0f} req/s of 10-event batches = "
        f"{e2e['offered_events_per_sec']:.0f} events/s (statuses {results['e2e_load']['statuses']}).")
    add(f"- Processed and stored: {e2e['processed_events']:.0f} events, {e2e['processed_events_per_sec']} events/s sustained "
        f"(including {e2e['drain_seconds_after_load']} s to drain the backlog after the load stopped; final lag {e2e['final_lag']}).")
    if q:
        add(f"- Beacon → queryable (202 until the visitor is readable through the API), {q.get('samples')} probes under that load: "
            f"p50 {percentile_ms(q['latency'], 'p50_us')} ms, p99 {percentile_ms(q['latency'], 'p99_us')} ms, max {percentile_ms(q['latency'], 'max_us')} ms"
            f"{first_probe(q)}.")
    add(f"- Peak RSS: collector alone {results['ingest_rss_mb']:.0f} MB under max load; `crm up` {results['up_rss_mb']:.0f} MB"
        + (f"; collector on Kafka {results['kafka_rss_mb']:.0f} MB." if "kafka_rss_mb" in results else "."))
    kq = results.get("kafka_e2e_queryable") or {}
    if kq:
        load = results["kafka_e2e_load"]
        add(f"- Scale-out shape (`crm ingest` → tansu → `crm process` → ClickHouse ← `crm api`, three processes on one core): under "
            f"{load['events_per_sec']:.0f} events/s, beacon → queryable p50 {percentile_ms(kq['latency'], 'p50_us')} ms, "
            f"p99 {percentile_ms(kq['latency'], 'p99_us')} ms ({kq.get('samples')} probes); the processor stored "
            f"{results.get('kafka_e2e_processed_per_sec')} events/s over the run{first_probe(kq)}.")
    add("")
    add(f"## API reads with {results['api_visitors']:,} visitors in the store")
    add("")
    add(f"- Seeding: {results['api_seed']}.")
    add(f"- `GET /api/v1/visitors/{{id}}`: p50 {percentile_ms(api['latency'], 'p50_us')} ms, p99 {percentile_ms(api['latency'], 'p99_us')} ms.")
    add(f"- `GET /api/v1/visitors?sort=…&limit=50`: p50 {percentile_ms(api['list_latency'], 'p50_us')} ms, "
        f"p99 {percentile_ms(api['list_latency'], 'p99_us')} ms.")
    add("")
    seeded_up = results.get("up_seeded")
    if seeded_up:
        rec = results.get("recovery_seeded") or {}
        add(f"- `crm up` on that store under the same load as above ({results['up_seeded_load']['events_per_sec']:,} events/s offered): "
            f"{seeded_up['processed_events_per_sec']:,} events/s processed, peak RSS {seeded_up['peak_rss_mb']:.0f} MB.")
        add(f"- Killed with SIGKILL halfway through a second load, then started again on the same data dir: listening after "
            f"{rec.get('listening_s', '?')} s, `/readyz` 200 after {rec.get('ready_s', '?')} s, consumer lag 0 (every acknowledged event stored) "
            f"after {rec.get('caught_up_s', '?')} s. The counts (0 lost, 0 twice) are asserted by the e2e test "
            "`acknowledged_events_survive_sigkill_exactly_once` in `.ci/run`.")
    add("")
    add("## Stores: bulk write and overview query (same data, same run)")
    add("")
    add("Enriched events with their sessions written through the `Store` trait in 10 000-event batches, "
        "then `overview` over the whole 30-day range (10 runs) and 1 000 visitor timelines (50 newest events).")
    add("")
    add("The embedded store's parts are merged after the writes (as `crm up` does every minute) and its closed days rolled up "
        "(as `crm up` does after merging); the overview is timed on the merged parts before the rollups exist (scan) and after "
        "(as served), and store_bench checks both answers are equal.")
    add("")
    add("| store | events | write rows/s | overview p50 | overview p99 | overview p50, scanning | timeline p50 | timeline p99 | merge | rollups |")
    add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    stores = {"embedded": "embedded (default)", "redb": "redb (first design)"}
    seconds = lambda row, key: f"{row[key]:.1f} s" if key in row else ""
    for row in results.get("stores", []):
        scan = f"{percentile_ms(row['overview_scan'], 'p50_us')} ms" if "overview_scan" in row else ""
        add(f"| {stores.get(row['store'], row['store'])} | {row['events']:,} | {row['rows_per_sec']:,.0f} | {percentile_ms(row['overview'], 'p50_us')} ms | "
            f"{percentile_ms(row['overview'], 'p99_us')} ms | {scan} | {percentile_ms(row['timeline'], 'p50_us')} ms | "
            f"{percentile_ms(row['timeline'], 'p99_us')} ms | {seconds(row, 'compact_seconds')} | {seconds(row, 'rollup_seconds')} |")
    if not FULL:
        add("")
        add("10 M events (the embedded store and ClickHouse; redb only to 1 M) run with `scripts/bench.sh --full`.")
    add("")
    kb = results.get("kb_search")
    if kb:
        add("## Knowledge-base search (`kb_search_bench`, one core)")
        add("")
        add(f"{kb['articles']:,} generated help-centre articles, {kb['queries_per_mode']} queries per mode (ten phrasings, "
            "paraphrases and exact terms), top 10 with snippets. The baseline is BM25 alone in the same process; "
            "hybrid embeds the query with all-MiniLM-L6-v2, scans every article's passage vectors and fuses both rankings.")
        add("")
        add("| mode | p50 | p99 |")
        add("| --- | ---: | ---: |")
        add(f"| BM25 alone (baseline) | {kb['keyword_p50_ms']:.2f} ms | {kb['keyword_p99_ms']:.2f} ms |")
        add(f"| hybrid | {kb['hybrid_p50_ms']:.1f} ms | {kb['hybrid_p99_ms']:.1f} ms ({kb['hybrid_over_keyword_p99']:.0f} × the baseline) |")
        add("")
        add(f"Indexing: {kb['passages_embedded_per_s']:.0f} passages embedded per second ({kb['distinct_passages']:,} distinct passages; "
            f"{kb['indexing_s']} s for all {kb['articles']:,} articles).")
        add("")
    add("## Microbenchmarks (criterion, per element)")
    add("")
    add("| benchmark | ns/element | per second (one core) |")
    add("| --- | ---: | ---: |")
    for name in sorted(micro):
        add(f"| {name} | {micro[name]['ns_per_element']} | {micro[name]['per_second']:,} |")
    if "geo/lookup_dbip_city_lite" not in micro:
        add("| geo/lookup_dbip_city_lite | not run (DB-IP City Lite could not be fetched) | |")
    add("")
    add("## Tracker")
    add("")
    add(f"- `widgets/tracking.js`: {results['tracker_raw_gzip']} bytes gzipped as written; "
        f"{results['tracker_min_gzip'] or 'n/a'} bytes as served (widgets/build.sh: terser, gzip -9).")
    add("")
    add("## Targets")
    add("")
    add("| target | measured | verdict |")
    add("| --- | --- | --- |")
    ingest_ratio = ratio(ingest["requests_per_sec"], floor)
    add(f"| collector → embedded log ≥ 70 % of the floor | {ingest_ratio:.0%} | {verdict(ingest_ratio >= 0.70)} |")
    p99_half = half["latency"]["p99_us"] / 1000
    add(f"| p99 < 5 ms at half of max rate | {p99_half:.2f} ms | {verdict(p99_half < 5)} |")
    if enrich:
        add(f"| enrichment + scoring ≥ 500 K events/s per core | {enrich['per_second']:,}/s | {verdict(enrich['per_second'] >= 500_000)} |")
    add(f"| end to end ≥ 50 K events/s sustained | {e2e['processed_events_per_sec']:,}/s processed | {verdict(e2e['processed_events_per_sec'] >= 50_000)} |")
    if q:
        add(f"| beacon → queryable p99 < 1 s (embedded) | {percentile_ms(q['latency'], 'p99_us')} ms | {verdict(q['latency']['p99_us'] < 1_000_000)} |")
    p99_profile = api["latency"]["p99_us"] / 1000
    p99_list = api["list_latency"]["p99_us"] / 1000
    add(f"| API profile and list p99 < 20 ms with {results['api_visitors']:,} visitors | {p99_profile:.2f} / {p99_list:.2f} ms | {verdict(max(p99_profile, p99_list) < 20)} |")
    add(f"| collector RSS < 100 MB under load | {results['ingest_rss_mb']:.0f} MB | {verdict(results['ingest_rss_mb'] < 100)} |")
    if seeded_up:
        add(f"| `crm up` peak RSS < 512 MB at {seeded_up['visitors']:,} visitors under load | {seeded_up['peak_rss_mb']:.0f} MB | {verdict(seeded_up['peak_rss_mb'] < 512)} |")
        ready = (results.get("recovery_seeded") or {}).get("ready_s")
        add(f"| kill -9 under load at {seeded_up['visitors']:,} visitors: ready again < 15 s | {ready if ready is not None else '?'} s | {verdict(ready is not None and ready < 15)} |")
    by_size = {}
    for row in results.get("stores", []):
        by_size.setdefault(row["events"], {})[row["store"]] = row
    for events, rows in sorted(by_size.items()):
        if events >= 10_000_000 and "embedded" in rows and "clickhouse" in rows:
            q = rows["embedded"]["overview"]["p50_us"] / rows["clickhouse"]["overview"]["p50_us"]
            add(f"| overview at {events:,} events ≤ 1.5 × ClickHouse's | {q:.2f} × (scanning, no rollups: "
                f"{rows['embedded']['overview_scan']['p50_us'] / rows['clickhouse']['overview']['p50_us']:.1f} ×) | {verdict(q <= 1.5)} |")
    if kb:
        add(f"| knowledge-base search p99 < 50 ms with {kb['articles']:,} articles | {kb['hybrid_p99_ms']:.1f} ms | "
            f"{verdict(kb['hybrid_p99_ms'] < 50) if kb['articles'] >= 10_000 else 'not measured at 10 000 (--quick)'} |")
    size = results["tracker_min_gzip"]
    add(f"| tracker ≤ 2 KB gzipped | {size or 'n/a'} bytes | {verdict(size is not None and size <= 2048)} |")
    if "kafka" in results:
        kafka_ratio = ratio(results["kafka"]["requests_per_sec"], floor)
        add(f"| collector → Kafka ≥ 50 % of the floor | {kafka_ratio:.0%} (256 connections: "
            f"{ratio(results['kafka_c256']['requests_per_sec'], results['floor_c256']['requests_per_sec']):.0%}) | {verdict(kafka_ratio >= 0.5)} |")
        kafka_p99 = results["kafka_half"]["latency"]["p99_us"] / 1000
        add(f"| Kafka: p99 < 5 ms at half of max rate | {kafka_p99:.2f} ms | {verdict(kafka_p99 < 5)} |")
    if kq:
        add(f"| beacon → queryable p99 < 3 s (Kafka + ClickHouse) | {percentile_ms(kq['latency'], 'p99_us')} ms | {verdict(kq['latency']['p99_us'] < 3_000_000)} |")
    add("")
    add("Where the missed targets' time goes, what was changed and what is next: [ANALYSIS.md](ANALYSIS.md).")
    for note in notes:
        add(f"\nNote: {note}")
    # Sections written by other commands (the health batch benchmark, the churn evaluation) are
    # kept: everything between <!-- section:NAME --> and <!-- /section:NAME --> markers.
    previous = (ROOT / "bench" / "RESULTS.md").read_text() if (ROOT / "bench" / "RESULTS.md").exists() else ""
    kept = re.findall(r"<!-- section:([\w-]+) -->.*?<!-- /section:\1 -->", previous, flags=re.S)
    for name in kept:
        block = re.search(rf"<!-- section:{name} -->.*?<!-- /section:{name} -->", previous, flags=re.S).group(0)
        lines.extend(["", block])
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(lines) + "\n")
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    log("wrote bench/RESULTS.md")


if __name__ == "__main__":
    main()
