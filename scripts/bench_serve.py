"""Requests per second of scripts/serve.py's POST /model/parse, with 1 and more concurrent clients.

    python scripts/bench_serve.py --ckpt <run>/checkpoints/epoch_000.ckpt --clients 1,8

Starts the server on a free port of 127.0.0.1 (one torch thread), warms it up, then for each
client count sends ``--requests`` requests from that many threads, each on its own keep-alive
connection, with ATIS-like sentences. Prints the rate and median latency per count, and the
rates on the last line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SENTENCES = [
    "Show me flights from Denver to Boston on Monday",
    "what is the cheapest fare from dallas to baltimore",
    "I'd like a morning flight from San Francisco to Pittsburgh",
    "list all american airlines flights arriving in atlanta after 5pm",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(ckpt: str, port: int) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "scripts" / "serve.py"), f"ckpt_path={ckpt}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([*command, f"port={port}", "num_threads=1"], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
        if server.poll() is not None:
            break
    server.terminate()
    sys.exit("the server did not start")


def client(port: int, count: int, offset: int) -> list[float]:
    """``count`` requests on one keep-alive connection; the latency of each, in seconds."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies = []
    for i in range(count):
        body = json.dumps({"text": SENTENCES[(offset + i) % len(SENTENCES)]})
        start = time.perf_counter()
        connection.request("POST", "/model/parse", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"status {answer.status}")
        latencies.append(time.perf_counter() - start)
    connection.close()
    return latencies


def rate(port: int, clients: int, requests: int) -> tuple[float, float]:
    """(requests per second, median latency in ms) with ``clients`` concurrent clients."""
    each = max(1, requests // clients)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(lambda c: client(port, each, c), range(clients)))
    seconds = time.perf_counter() - start
    latencies = [t for run in runs for t in run]
    return len(latencies) / seconds, statistics.median(latencies) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True, help="a slot-filling checkpoint")
    parser.add_argument("--clients", default="1,8", help="concurrent client counts, e.g. 1,8")
    parser.add_argument("--requests", type=int, default=400, help="requests per client count")
    args = parser.parse_args()
    port = free_port()
    server = start_server(args.ckpt, port)
    try:
        client(port, 20, 0)  # warm-up
        rates = []
        for clients in (int(c) for c in args.clients.split(",")):
            per_second, median = rate(port, clients, args.requests)
            rates.append(f"{clients} clients {per_second:.0f}")
            print(f"{clients} clients: {per_second:.0f} requests/s, median latency {median:.1f} ms")
        print("requests/s: " + ", ".join(rates))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
