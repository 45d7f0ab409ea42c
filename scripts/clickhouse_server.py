#!/usr/bin/env python3
"""Serves a real ClickHouse (26.9, from the chdb-core wheel) over HTTP and native TCP until killed.

Usage: clickhouse_server.py WORKDIR HTTP_PORT TCP_PORT
Data lives in WORKDIR/data and survives restarts of the same WORKDIR. Run it with the venv
python that scripts/clickhouse.sh creates.
"""

import os
import sys

workdir, http_port, tcp_port = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(os.path.join(workdir, "data"), exist_ok=True)
with open(os.path.join(workdir, "config.xml"), "w") as config:
    config.write(
        "<clickhouse>"
        f"<http_port>{http_port}</http_port><tcp_port>{tcp_port}</tcp_port>"
        "<listen_host>127.0.0.1</listen_host>"
        "</clickhouse>"
    )

from chdb import _chdb  # noqa: E402  (importing chdb changes the working directory)

os.chdir(workdir)
_chdb.query(
    "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
    "SELECT sleepEachRow(1) FROM numbers(1000000000) "
    "SETTINGS max_block_size=1, function_sleep_max_microseconds_per_block=0, max_execution_time=0",
    "TSV",
    path=os.path.join(workdir, "data"),
)
