"""Overload of `hearth serve` started with --max-running 2 --max-queue 1: past 3 requests in flight the
server answers 503 with Retry-After, and once the load is gone it serves again.

usage: overload.py BASE_URL
"""
import sys
import threading

import httpx

BASE = sys.argv[1]
BODY = {"model": "smol", "messages": [{"role": "user", "content": "Count to fifty."}], "max_tokens": 40,
        "temperature": 0, "ignore_eos": True}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    statuses, retry_after, lock = [], [], threading.Lock()
    # Load the model first, so the burst below meets a running engine rather than a load.
    check(httpx.post(BASE + "/v1/chat/completions", json={**BODY, "max_tokens": 1}, timeout=120).status_code == 200, "warm-up")

    def worker():
        r = httpx.post(BASE + "/v1/chat/completions", json=BODY, timeout=300)
        with lock:
            statuses.append(r.status_code)
            if r.status_code == 503:
                retry_after.append(r.headers.get("retry-after"))
                check(r.json()["error"]["type"] == "server_overloaded", r.text)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    check(len(statuses) == 10, statuses)
    check(set(statuses) <= {200, 503} and statuses.count(200) >= 3 and statuses.count(503) >= 1, statuses)
    check(all(r is not None and int(r) >= 1 for r in retry_after), retry_after)
    r = httpx.post(BASE + "/v1/chat/completions", json=BODY, timeout=300)
    check(r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length", f"after overload: {r.status_code}")
    print(f"overload: all checks passed ({statuses.count(200)} served, {statuses.count(503)} refused)")


main()
