"""API key and Unix socket of `hearth serve`.

usage: security.py api-key BASE_URL KEY    (server started with --api-key KEY)
       security.py socket SOCKET_PATH       (server started with --socket PATH)
"""
import os
import stat
import sys

import httpx
import openai


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def api_key(base, key):
    check(httpx.get(base + "/health").status_code == 200, "/health needs no key")
    r = httpx.get(base + "/v1/models")
    check(r.status_code == 401 and r.json()["error"]["type"] == "authentication_error", r.text)
    r = httpx.get(base + "/api/tags", headers={"Authorization": "Bearer wrong"})
    check(r.status_code == 401 and isinstance(r.json()["error"], str), r.text)
    check(httpx.get(base + "/metrics").status_code == 401, "metrics need the key too")
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    check([m.id for m in client.models.list()] == ["smol"], "the key opens the API")
    bad = openai.OpenAI(base_url=base + "/v1", api_key="nope", max_retries=0)
    try:
        bad.models.list()
        raise AssertionError("wrong key accepted")
    except openai.AuthenticationError:
        pass


def socket(path):
    mode = stat.S_IMODE(os.stat(path).st_mode)
    check(mode == 0o600, f"socket mode {oct(mode)}")
    client = httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://hearth")
    check(client.get("/health").text == "ok", "health over the socket")
    r = client.post("/v1/completions", json={"model": "smol", "prompt": "Hello", "max_tokens": 2, "temperature": 0})
    check(r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2, r.text)


if sys.argv[1] == "api-key":
    api_key(sys.argv[2], sys.argv[3])
else:
    socket(sys.argv[2])
print("security: all checks passed")
