"""The OpenAI API of `hearth serve`, through the real `openai` package: listing, chat and completions
(streaming and not), the usage chunk, stop strings, seeds, logprobs, n, and errors in OpenAI's format.

usage: openai_api.py BASE_URL   (the server serves SmolLM2 as `smol`)
"""
import json
import sys

import httpx
import openai

BASE = sys.argv[1]
client = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0, timeout=120)
MSGS = [{"role": "user", "content": "Name three colors."}]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def test_listing():
    ids = [m.id for m in client.models.list()]
    check(ids == ["smol"], f"models: {ids}")


def test_chat_non_streaming():
    r = client.chat.completions.create(model="smol", messages=MSGS, max_tokens=8, temperature=0)
    c = r.choices[0]
    check(r.object == "chat.completion" and c.message.role == "assistant", r)
    check(c.finish_reason == "length" and len(c.message.content) > 0, r)
    check(r.usage.completion_tokens == 8 and r.usage.prompt_tokens > 5, r.usage)
    check(r.usage.total_tokens == r.usage.prompt_tokens + 8, r.usage)
    return c.message.content


def test_chat_streaming_with_usage(expected):
    chunks = list(client.chat.completions.create(model="smol", messages=MSGS, max_tokens=8, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    check(chunks[0].choices[0].delta.role == "assistant", chunks[0])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(text == expected, f"streamed {text!r} != non-streamed {expected!r}")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(finishes == ["length"], finishes)
    last = chunks[-1]
    check(last.choices == [] and last.usage.completion_tokens == 8, last)
    check(all(c.usage is None for c in chunks[:-1]), "usage only on the last chunk")


def test_stop_string(expected):
    # Stop at the second word of the greedy reply: the output is the text before it.
    words = expected.split()
    check(len(words) >= 2, expected)
    stop = " " + words[1]
    r = client.chat.completions.create(model="smol", messages=MSGS, max_tokens=8, temperature=0, stop=[stop])
    c = r.choices[0]
    check(c.finish_reason == "stop", c)
    check(c.message.content == expected[: expected.index(stop)], f"{c.message.content!r} vs {expected!r} / {stop!r}")


def test_seed_reproducibility():
    kw = dict(model="smol", messages=[{"role": "user", "content": "Write a word."}], max_tokens=10, temperature=1.0, seed=1234)
    a = client.chat.completions.create(**kw).choices[0].message.content
    b = client.chat.completions.create(**kw).choices[0].message.content
    check(a == b, f"same seed, different output: {a!r} vs {b!r}")
    r = client.chat.completions.create(**kw, n=3)
    check([c.index for c in r.choices] == [0, 1, 2], r.choices)
    check(r.choices[0].message.content == a, "choice 0 keeps the request's seed")
    check(len({c.message.content for c in r.choices}) > 1, "choices with different seeds should differ")


def test_logprobs():
    r = client.chat.completions.create(model="smol", messages=MSGS, max_tokens=4, temperature=0, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    check(len(content) == 4, content)
    for t in content:
        check(len(t.top_logprobs) == 3 and t.logprob <= 0, t)
        # Greedy: the chosen token is the most likely one.
        check(abs(t.top_logprobs[0].logprob - t.logprob) < 1e-4, t)


def test_completions():
    r = client.completions.create(model="smol", prompt="The capital of France is", max_tokens=6, temperature=0)
    check(r.object == "text_completion" and r.choices[0].finish_reason == "length", r)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="smol", prompt="The capital of France is", max_tokens=6, temperature=0, stream=True) if c.choices)
    check(streamed == r.choices[0].text, f"{streamed!r} vs {r.choices[0].text!r}")
    r = client.completions.create(model="smol", prompt="1, 2, 3,", max_tokens=4, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    check(len(lp.tokens) == 4 and len(lp.top_logprobs[0]) == 2 and len(lp.text_offset) == 4, lp)


def expect_status(call, status, param=None):
    try:
        call()
    except openai.APIStatusError as e:
        check(e.status_code == status, f"status {e.status_code} != {status}: {e}")
        body = e.response.json()["error"]
        check(set(body) >= {"message", "type", "param", "code"}, body)
        if param:
            check(body["param"] == param, body)
        return body
    raise AssertionError(f"expected HTTP {status}")


def test_errors():
    expect_status(lambda: client.chat.completions.create(model="nope", messages=MSGS), 404, "model")
    expect_status(lambda: client.chat.completions.create(model="smol", messages=MSGS, max_tokens=-1), 400, "max_tokens")
    expect_status(lambda: client.chat.completions.create(model="smol", messages=MSGS, n=1000), 400, "n")
    expect_status(lambda: client.chat.completions.create(model="smol", messages=MSGS, temperature=7), 400, "temperature")
    expect_status(lambda: client.chat.completions.create(model="smol", messages=MSGS, top_p=0), 400, "top_p")
    body = expect_status(lambda: client.completions.create(model="smol", prompt="hello " * 3000, max_tokens=2), 400)
    check(body["code"] == "context_length_exceeded", body)
    raw = httpx.Client(base_url=BASE, timeout=30)
    for content, what in [(b"{not json", "malformed JSON"), (b'{"model": "smol", "messages": 5}', "wrong type"),
                          (b'{"model": "smol", "messages": [{"role": "user", "content": "\xff\xfe"}]}', "invalid UTF-8")]:
        r = raw.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
        check(r.status_code == 400, f"{what}: {r.status_code} {r.text}")
        check(r.json()["error"]["type"] == "invalid_request_error", r.text)
    # The server runs with --body-limit 64K; a small excess fits the socket buffers, so the 413 is read
    # rather than racing a connection reset.
    r = raw.post("/v1/chat/completions", content=b"x" * 100_000, headers={"content-type": "application/json"})
    check(r.status_code == 413, f"oversized body: {r.status_code}")
    check(raw.get("/v1/nothing").status_code == 404, "unknown route")
    check(raw.post("/v1/embeddings", json={"model": "smol", "input": "x"}).status_code == 501, "embeddings 501")
    # Still serving.
    test_chat_non_streaming()


def main():
    test_listing()
    expected = test_chat_non_streaming()
    test_chat_streaming_with_usage(expected)
    test_stop_string(expected)
    test_seed_reproducibility()
    test_logprobs()
    test_completions()
    test_errors()
    print("openai_api: all checks passed")


main()
