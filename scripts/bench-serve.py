#!/usr/bin/env python3
"""Aggregate generated tok/s of `hearth serve` vs llama.cpp's `llama-server` at several concurrencies, on
the same model, in the same run, with a shared-system-prompt chat workload.

For each server and each concurrency C it starts the server (llama-server with `-np C` and continuous
batching), sends C streams at a time until `--requests` (default 2*C) have finished, and reports
aggregate generated tok/s, TTFT p50/p99 and, for hearth, the prefix-cache hit rate from /metrics.
Every request asks for exactly `--max-tokens` tokens (ignore_eos), so both servers do the same work.

usage: scripts/bench-serve.py [--model GGUF] [--concurrency 1,4,16,64] [--max-tokens 64] [--requests N]
                              [--hearth target/release/hearth] [--llama-server PATH] [--only hearth|llama]
Run it with the dev venv's python (scripts/setup-venv.sh prints it): it needs httpx.
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("HEARTH_DEV_CACHE", Path.home() / ".cache/hearth-dev"))
SYSTEM = ("You are a careful assistant. Answer in plain prose, without lists, and keep every answer "
          "focused on the question that was asked. ") * 4
TOPICS = ["cats", "rain", "bread", "rivers", "music", "stars", "trees", "glass", "salt", "wind", "paper", "ice",
          "bees", "maps", "clocks", "honey", "sand", "snow", "ships", "tea", "iron", "milk", "owls", "gold"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited early with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"{url} not ready after {timeout}s")


def start_hearth(args, conc):
    port = free_port()
    cmd = [args.hearth, "serve", "--port", str(port), "--model", f"bench={args.model}", "--max-running", str(max(conc, 1)),
           "--kv-cache", args.kv_cache]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return proc, url


def start_llama(args, conc):
    port = free_port()
    ctx = args.ctx_per_slot * conc
    cmd = [args.llama_server, "-m", args.model, "--port", str(port), "--host", "127.0.0.1", "-np", str(conc),
           "-c", str(ctx), "--cont-batching", "-t", str(os.cpu_count())]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return proc, url


def one_request(url, i, max_tokens):
    body = {"model": "bench", "stream": True, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
            "messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": f"Tell me about {TOPICS[i % len(TOPICS)]} ({i})."}]}
    start = time.monotonic()
    ttft, tokens = None, 0
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                tokens += 1  # both servers send one content delta per token (held-back text aside)
                if ttft is None:
                    ttft = time.monotonic() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return ttft or (time.monotonic() - start), tokens


def prefix_counters(url):
    try:
        text = httpx.get(url + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    get = lambda name: sum(float(v) for v in re.findall(rf"^hearth:{name}\{{[^}}]*\}} (\S+)$", text, re.M))
    return get("prefix_cache_queries_total"), get("prefix_cache_hits_total")


def run_level(url, conc, requests, max_tokens):
    ttfts, counts, errors, lock = [], [], [], threading.Lock()
    next_i = iter(range(requests))

    def worker():
        for i in next_i:
            try:
                t, n = one_request(url, i, max_tokens)
                with lock:
                    ttfts.append(t)
                    counts.append(n)
            except Exception as e:  # counted and reported
                with lock:
                    errors.append(repr(e))

    before = prefix_counters(url)
    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    after = prefix_counters(url)
    hit = None
    if before and after and after[0] > before[0]:
        hit = (after[1] - before[1]) / (after[0] - before[0])
    q = sorted(ttfts)
    p99 = q[min(len(q) - 1, int(0.99 * len(q)))] if q else float("nan")
    return {"concurrency": conc, "requests": len(counts), "errors": len(errors), "tok_s": sum(counts) / wall,
            "ttft_p50": statistics.median(q) if q else float("nan"), "ttft_p99": p99, "prefix_hit_rate": hit}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(CACHE / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--requests", type=int, default=0, help="requests per level (default 2 x concurrency)")
    p.add_argument("--hearth", default=str(ROOT / "target/release/hearth"))
    p.add_argument("--llama-server", default=str(CACHE / "llama.cpp-11434.0.0/build/bin/llama-server"))
    p.add_argument("--kv-cache", default="1G")
    p.add_argument("--ctx-per-slot", type=int, default=512)
    p.add_argument("--only", choices=["hearth", "llama"])
    args = p.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    servers = [("hearth", start_hearth), ("llama-server", start_llama)]
    if args.only:
        servers = [s for s in servers if s[0].startswith(args.only)]
    print(f"model {Path(args.model).name}, {args.max_tokens} tokens per request, shared system prompt")
    print(f"{'server':<13}{'conc':>5}{'reqs':>6}{'err':>5}{'tok/s':>9}{'ttft p50':>10}{'ttft p99':>10}{'prefix hit':>12}")
    for conc in levels:
        for name, start in servers:
            proc, url = start(args, conc)
            try:
                r = run_level(url, conc, args.requests or 2 * conc, args.max_tokens)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            hit = "-" if r["prefix_hit_rate"] is None else f"{100 * r['prefix_hit_rate']:.0f}%"
            print(f"{name:<13}{conc:>5}{r['requests']:>6}{r['errors']:>5}{r['tok_s']:>9.1f}"
                  f"{r['ttft_p50'] * 1e3:>8.0f}ms{r['ttft_p99'] * 1e3:>8.0f}ms{hit:>12}", flush=True)


main()
