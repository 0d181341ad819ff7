"""Concurrency of `hearth serve`: 32 concurrent greedy streams give the same tokens as solo runs; a shared
system prompt hits the prefix cache; a client that disconnects frees its KV blocks (seen in /metrics);
and /metrics passes `promtool check metrics` apart from its one documented exception.

usage: concurrency.py BASE_URL   (the server serves SmolLM2 as `smol`)
"""
import re
import subprocess
import sys
import threading
import time

import httpx
import openai

BASE = sys.argv[1]
client = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0, timeout=300)
SYSTEM = "You are a helpful assistant who answers in one short sentence. " * 3
TOPICS = ["cats", "rain", "bread", "rivers", "music", "stars", "trees", "glass", "salt", "wind", "paper", "ice",
          "bees", "maps", "clocks", "honey", "sand", "snow", "ships", "tea", "iron", "milk", "owls", "gold",
          "moss", "silk", "fog", "corn", "wolves", "lamps", "rope", "clay"]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def metrics():
    text = httpx.get(BASE + "/metrics", timeout=30).text
    values = {}
    for line in text.splitlines():
        m = re.match(r'hearth:(\w+)\{model_name="smol"\} (\S+)$', line)
        if m:
            values[m.group(1)] = float(m.group(2))
    return text, values


def stream_text(topic):
    chunks = client.chat.completions.create(
        model="smol", temperature=0, max_tokens=8, stream=True, extra_body={"ignore_eos": True},
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Tell me about {topic}."}])
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_batch_invariance():
    solo = [stream_text(t) for t in TOPICS]
    check(all(solo), "every solo run produced text")
    results = [None] * len(TOPICS)
    errors = []

    def worker(i):
        try:
            results[i] = stream_text(TOPICS[i])
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(TOPICS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    check(not errors, errors)
    diffs = [(TOPICS[i], solo[i], results[i]) for i in range(len(TOPICS)) if solo[i] != results[i]]
    check(not diffs, f"{len(diffs)} of 32 concurrent streams differ from solo runs: {diffs[:3]}")
    _, m = metrics()
    # Every request after the first shares the system prompt's blocks.
    check(m["prefix_cache_hits_total"] > 0.5 * m["prefix_cache_queries_total"], m)


def test_disconnect_frees_blocks():
    _, before = metrics()
    check(before["kv_cache_usage_perc"] == 0, before)
    stream = client.chat.completions.create(
        model="smol", temperature=0, max_tokens=400, stream=True, extra_body={"ignore_eos": True},
        messages=[{"role": "user", "content": "Count from one to one thousand."}])
    it = iter(stream)
    for _ in range(3):
        next(it)
    _, during = metrics()
    check(during["kv_cache_usage_perc"] > 0 and during["num_requests_running"] == 1, during)
    stream.close()  # the client goes away mid-stream
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, after = metrics()
        if after["kv_cache_usage_perc"] == 0 and after["num_requests_running"] == 0:
            break
        time.sleep(0.1)
    check(after["kv_cache_usage_perc"] == 0 and after["num_requests_running"] == 0, f"blocks still held: {after}")
    check(after["generation_tokens_total"] - before["generation_tokens_total"] < 400, "generation stopped early")


def test_promtool():
    text, _ = metrics()
    for family in ["time_to_first_token_seconds", "time_per_output_token_seconds", "e2e_request_latency_seconds",
                   "request_queue_time_seconds"]:
        check(f'hearth:{family}_count{{model_name="smol"}}' in text, family)
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    problems = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    # vLLM-style `hearth:` names trip promtool's one style lint about colons; anything else is a failure.
    other = [p for p in problems if "metric names should not contain ':'" not in p]
    check(not other, f"promtool: {other}")
    check(r.returncode in (0, 3), f"promtool exit {r.returncode}: {problems}")
    underscored = text.replace("hearth:", "hearth_")
    r = subprocess.run(["promtool", "check", "metrics"], input=underscored, capture_output=True, text=True)
    check(r.returncode == 0, f"promtool on the same text with `hearth_` names: {r.stdout}{r.stderr}")


def main():
    test_batch_invariance()
    test_disconnect_frees_blocks()
    test_promtool()
    print("concurrency: all checks passed")


main()
