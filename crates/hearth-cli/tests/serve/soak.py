"""Bounded soak of `hearth serve`: 2,000 chat requests with 32 in flight, short varied prompts behind one
shared system prompt (so the prefix cache is exercised), a mix of streaming and non-streaming, and every
50th client hanging up mid-stream. It requires 0 errors, a server RSS that does not grow with the request
count, and an idle engine afterwards (0 running, 0 waiting, KV usage 0 in /metrics).

usage: soak.py BASE_URL SERVER_PID   (the server serves SmolLM2 as `smol`)
"""
import json
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai

BASE, PID = sys.argv[1], int(sys.argv[2])
TOTAL, CONCURRENCY, WARMUP, CUT_EVERY = 2000, 32, 100, 50
client = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0, timeout=300)
http = httpx.Client(timeout=300, limits=httpx.Limits(max_connections=CONCURRENCY * 2))
SYSTEM = "You are a helpful assistant who answers in one short sentence. " * 3
TOPICS = ["cats", "rain", "bread", "rivers", "music", "stars", "trees", "glass", "salt", "wind", "paper", "ice",
          "bees", "maps", "clocks", "honey", "sand", "snow", "ships", "tea", "iron", "milk", "owls", "gold",
          "moss", "silk", "fog", "corn", "wolves", "lamps", "rope", "clay"]
QUESTIONS = ["Tell me about {}.", "Why do people like {}?", "Give one fact about {}.", "Describe {} briefly."]

errors, lock = [], threading.Lock()


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def request_body(i):
    """Request `i`: a varied user turn after the shared system prompt, a few tokens, greedy or seeded."""
    topic = TOPICS[i % len(TOPICS)]
    question = QUESTIONS[(i // len(TOPICS)) % len(QUESTIONS)].format(topic)
    body = {"model": "smol", "max_tokens": 4 + i % 5, "ignore_eos": True,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]}
    if i % 3 == 0:
        body.update(temperature=0.8, seed=i)
    else:
        body["temperature"] = 0
    return body


def non_streaming(i, body):
    """Through the openai client: it raises on a non-200 or a body it cannot parse."""
    fields = {k: v for k, v in body.items() if k != "ignore_eos"}
    r = client.chat.completions.create(**fields, extra_body={"ignore_eos": body["ignore_eos"]})
    choice = r.choices[0]
    check(isinstance(choice.message.content, str) and choice.message.content, f"#{i}: empty content {r}")
    check(choice.finish_reason == "length", f"#{i}: finish_reason {choice.finish_reason}")
    check(r.usage.completion_tokens == body["max_tokens"], f"#{i}: usage {r.usage}")


def sse_events(response):
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield line[len("data: "):]
        elif line.strip() and not line.startswith(":"):  # ":" lines are the server's SSE keep-alive comments
            raise AssertionError(f"unexpected SSE line {line!r}")


def streaming(i, body, cut):
    """Raw SSE (the openai client ends quietly on a stream without [DONE]; this must notice it)."""
    body = {**body, "stream": True, "stream_options": {"include_usage": i % 4 == 1}}
    if cut:  # long enough that hanging up after two chunks is truly mid-stream
        body["max_tokens"] = 64
    with http.stream("POST", BASE + "/v1/chat/completions", json=body) as r:
        check(r.status_code == 200, f"#{i}: status {r.status_code}")
        chunks, finish, done = [], None, False
        for data in sse_events(r):
            check(not done, f"#{i}: data after [DONE]")
            if data == "[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            chunks.append(chunk)
            if chunk["choices"] and chunk["choices"][0].get("finish_reason"):
                finish = chunk["choices"][0]["finish_reason"]
            if cut and len(chunks) == 2:
                check(not done and finish is None, f"#{i}: stream ended before the cut")
                return  # leaving the block closes the connection: the server must cancel the request
    check(done, f"#{i}: stream without [DONE] ({len(chunks)} chunks)")
    check(chunks[0]["choices"][0]["delta"].get("role") == "assistant", f"#{i}: first delta {chunks[0]}")
    check(finish == "length", f"#{i}: finish_reason {finish}")
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    check(text, f"#{i}: no text streamed")
    if body["stream_options"]["include_usage"]:
        check(chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == body["max_tokens"],
              f"#{i}: usage chunk {chunks[-1]}")


def one_request(i):
    body = request_body(i)
    try:
        if i % CUT_EVERY == CUT_EVERY - 1:
            streaming(i, body, cut=True)
        elif i % 2 == 0:
            streaming(i, body, cut=False)
        else:
            non_streaming(i, body)
    except Exception as e:  # every failure is counted; the soak goes on
        with lock:
            errors.append(f"#{i}: {e!r}"[:300])


def run(requests, pool):
    list(pool.map(one_request, requests))


def rss_mib():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {PID}")


def metrics():
    values = {}
    for line in http.get(BASE + "/metrics").text.splitlines():
        m = re.match(r'hearth:(\w+)\{model_name="smol"\} (\S+)$', line)
        if m:
            values[m.group(1)] = float(m.group(2))
    return values


def idle_metrics():
    """Cancelled requests are freed by the engine task shortly after the hang-up: poll, bounded."""
    deadline = time.monotonic() + 30
    while True:
        m = metrics()
        idle = m["num_requests_running"] == 0 and m["num_requests_waiting"] == 0 and m["kv_cache_usage_perc"] == 0
        if idle or time.monotonic() > deadline:
            return m
        time.sleep(0.1)


def main():
    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        # The warm-up loads the model, touches its pages and fills the pools to their working size.
        run(range(WARMUP), pool)
        rss = [(WARMUP, rss_mib())]
        for first in range(WARMUP, TOTAL, 500):
            run(range(first, min(first + 500, TOTAL)), pool)
            rss.append((min(first + 500, TOTAL), rss_mib()))
    elapsed = time.monotonic() - started
    cuts = TOTAL // CUT_EVERY
    print(f"soak: {TOTAL} requests ({cuts} cut mid-stream) at concurrency {CONCURRENCY} in {elapsed:.1f} s "
          f"({TOTAL / elapsed:.1f} req/s), {len(errors)} errors")
    print("soak: RSS after requests " + ", ".join(f"{n}: {mib:.1f} MiB" for n, mib in rss))
    start, end = rss[0][1], rss[-1][1]
    print(f"soak: RSS start {start:.1f} MiB, end {end:.1f} MiB")
    check(not errors, f"{len(errors)} errors, first: {errors[:5]}")
    # Weights are mmapped and the KV cache is allocated whole at load but paged in lazily: prefix caching
    # keeps freed blocks around and hands out fresh ones, so the resident set climbs while the pool is
    # first walked through (CI: +71 MiB over requests 100-600), then flattens. A leak grows with the request
    # count instead, so the check is on the second half of the run, once every block has been touched:
    # 5% + 16 MiB over 900 requests. A leak of ~20 KiB per request would already exceed it.
    mid_n, mid = min(rss, key=lambda point: abs(point[0] - TOTAL // 2 - 100))
    check(end - mid <= mid * 0.05 + 16,
          f"RSS grew from {mid:.1f} MiB (after {mid_n} requests) to {end:.1f} MiB at the end of the soak")
    # Independent of the pool's size, the total stays bounded: the pool and allocator slack fit in 2x + 64.
    check(end <= start * 2 + 64, f"RSS grew from {start:.1f} MiB to {end:.1f} MiB over the soak")
    m = idle_metrics()
    print(f"soak: prefix cache hits {m['prefix_cache_hits_total']:.0f} of {m['prefix_cache_queries_total']:.0f} "
          f"prompt tokens, {m['num_preemptions_total']:.0f} preemptions")
    check(m["num_requests_running"] == 0 and m["num_requests_waiting"] == 0, f"requests left in the engine: {m}")
    check(m["kv_cache_usage_perc"] == 0, f"KV blocks still held after the soak: {m}")
    check(m["prefix_cache_hits_total"] > 0.5 * m["prefix_cache_queries_total"], f"shared system prompt missed: {m}")
    print("soak: all checks passed")


main()
