"""Load test of ``windowner serve`` on localhost: cold start, latency and throughput.

Starts ``windowner serve`` as a subprocess on 127.0.0.1 (a free port), measures the cold start
(process spawn → first 200 from /health, the model loaded), then:

1. sequential: one client, ``--sequential`` requests one after another → p50/p99 latency;
2. concurrent: ``--clients`` keep-alive connections posting for ``--seconds`` (each loop bounded
   by the deadline and by ``--max-requests``) → p50/p99 latency and requests/s.

Every request is ``POST /ner`` with the same paragraph (40 tokens by default). The client is
plain asyncio over raw HTTP/1.1 (no client library overhead), on the same machine: it takes
CPU from the server, so the figures are a floor.

    python benchmarks/bench_serve.py --model runs/latest --workers 2 --clients 50 --seconds 20
    python benchmarks/bench_serve.py --model runs/latest --screenshot docs/serve.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARAGRAPH = (
    "Elena Marsh, the chief executive of Halvorsen Marine, told reporters in Oslo on "
    "Tuesday that the company would open two offices in Singapore and hire engineers from "
    "Siemens and Vienna University before the end of the year."
)  # 40 tokens with windowner's tokenizer
SCREENSHOT_TEXT = (
    "Maria Lopez flew from Lisbon to Berlin on Monday to meet officials of Siemens and the "
    "United Nations.\nShares of Nordic Steel fell in Stockholm after Anna Berg, its chief "
    "executive, resigned."
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str, port: int, workers: int) -> tuple[subprocess.Popen, float]:
    """Spawn ``windowner serve``; (process, seconds until /health answered 200)."""
    command = [sys.executable, "-m", "windowner", "serve", "--model", model]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = started + 60
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
                if resp.status == 200:
                    return proc, time.perf_counter() - started
        except OSError:
            time.sleep(0.01)
    proc.kill()
    raise SystemExit("server did not answer /health within 60 s")


async def client(
    port: int, body: bytes, deadline: float, max_requests: int, latencies: list[float]
) -> int:
    """One keep-alive connection posting ``body`` until ``deadline``; returns its error count."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /ner HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    errors = 0
    try:
        for _ in range(max_requests):
            if time.perf_counter() >= deadline:
                break
            t0 = time.perf_counter()
            writer.write(head + body)
            status = await asyncio.wait_for(read_response(reader), timeout=30)
            latencies.append(time.perf_counter() - t0)
            errors += status != 200
    finally:
        writer.close()
    return errors


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response with a Content-Length; its status code."""
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def load(port: int, body: bytes, clients: int, seconds: float, max_requests: int) -> dict:
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    errors = await asyncio.gather(
        *(client(port, body, deadline, max_requests, latencies) for _ in range(clients))
    )
    elapsed = time.perf_counter() - started
    return summarize(latencies, elapsed, sum(errors))


def summarize(latencies: list[float], elapsed: float, errors: int) -> dict:
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return round(1e3 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {
        "requests": len(ordered),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(ordered) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(1e3 * ordered[-1], 3),
    }


def screenshot(port: int, path: Path) -> None:
    """The page at ``/?text=…`` in headless Chromium (playwright), as a PNG."""
    import shutil
    import urllib.parse

    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{port}/?text=" + urllib.parse.quote(SCREENSHOT_TEXT)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=shutil.which("chromium"), args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 900, "height": 480})
        page.goto(url)
        page.wait_for_selector("body[data-state=done]")
        page.hover("mark.ent >> nth=1")
        page.screenshot(path=str(path))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="runs/latest", help="run directory or model file")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sequential", type=int, default=500, help="requests, one client")
    parser.add_argument("--max-requests", type=int, default=100_000, help="per client")
    parser.add_argument("--text", default=PARAGRAPH)
    parser.add_argument("--screenshot", type=Path, help="only save a PNG of the page")
    args = parser.parse_args()
    os.chdir(ROOT)
    port = free_port()
    proc, cold = start_server(args.model, port, 1 if args.screenshot else args.workers)
    try:
        if args.screenshot:
            screenshot(port, args.screenshot)
            print(f"wrote {args.screenshot}", file=sys.stderr)
            return
        body = json.dumps({"text": args.text}).encode()
        sequential = asyncio.run(load(port, body, 1, 3600, args.sequential))
        concurrent = asyncio.run(load(port, body, args.clients, args.seconds, args.max_requests))
    finally:
        proc.send_signal(signal.SIGINT if args.workers == 1 else signal.SIGTERM)
        proc.wait(timeout=30)
    result = {
        "workers": args.workers,
        "clients": args.clients,
        "text_chars": len(args.text),
        "cold_start_s": round(cold, 3),
        "sequential": sequential,
        "concurrent": concurrent,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
