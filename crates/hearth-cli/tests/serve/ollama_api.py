"""The Ollama API of `hearth serve`, through the real `ollama` package: version, tags, show, generate and
chat (streaming by default and not), options, the final chunk's timings, /api/ps, keep_alive unloading,
copy/delete, and errors in Ollama's format.

usage: ollama_api.py BASE_URL   (the server serves SmolLM2 as `smol`)
"""
import sys
import time

import httpx
import ollama

BASE = sys.argv[1]
client = ollama.Client(host=BASE, timeout=120)
GREEDY = {"temperature": 0, "num_predict": 6}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def loaded():
    return [m.model for m in client.ps().models]


def test_metadata():
    raw = httpx.Client(base_url=BASE, timeout=30)
    check(raw.get("/").text == "Ollama is running", "root text")
    check(raw.get("/api/version").json()["version"], "version")
    names = [m.model for m in client.list().models]
    check(names == ["smol"], names)
    m = client.list().models[0]
    check(m.details.family == "llama" and m.details.quantization_level == "Q4_1" and m.size > 50_000_000, m)
    s = client.show("smol")
    check(s.details.family == "llama" and "<|im_start|>" in s.template, s)
    check(s.modelinfo["general.architecture"] == "llama", s.modelinfo)


def test_generate():
    r = client.generate(model="smol", prompt="Why is the sky blue?", options=GREEDY, stream=False)
    check(r.done and r.done_reason == "length" and r.eval_count == 6, r)
    check(r.prompt_eval_count > 5 and r.total_duration >= r.eval_duration > 0 and r.prompt_eval_duration > 0, r)
    check(r.load_duration is not None and r.load_duration >= 0, r)
    parts = list(client.generate(model="smol", prompt="Why is the sky blue?", options=GREEDY, stream=True))
    check(all(not p.done for p in parts[:-1]) and parts[-1].done, "only the last chunk is done")
    check("".join(p.response for p in parts) == r.response, f"streamed vs not: {parts} / {r.response!r}")
    final = parts[-1]
    check(final.done_reason == "length" and final.eval_count == 6 and final.total_duration > 0, final)
    return r.response


def test_options(expected):
    # Stop strings: the text ends before the stop.
    words = expected.split()
    stop = " " + words[1]
    r = client.generate(model="smol", prompt="Why is the sky blue?", options={**GREEDY, "stop": [stop]}, stream=False)
    check(r.done_reason == "stop" and r.response == expected[: expected.index(stop)], (r.response, expected, stop))
    seeded = {"temperature": 1.0, "seed": 7, "num_predict": 8}
    # The first request computes the whole prompt, the second hits the prefix cache: the same seed
    # must still give the same text (the kernels' rows do not depend on batch shape).
    a = client.generate(model="smol", prompt="Tell me a word.", options=seeded, stream=False).response
    b = client.generate(model="smol", prompt="Tell me a word.", options=seeded, stream=False).response
    check(a == b, f"same seed, different output: {a!r} / {b!r}")


def test_chat():
    msgs = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Hi!"}]
    r = client.chat(model="smol", messages=msgs, options=GREEDY, stream=False)
    check(r.message.role == "assistant" and r.message.content and r.done_reason == "length", r)
    parts = list(client.chat(model="smol", messages=msgs, options=GREEDY, stream=True))
    check("".join(p.message.content for p in parts) == r.message.content, "streamed chat matches")
    check(parts[-1].done and parts[-1].eval_count == 6, parts[-1])


def test_ps_and_keep_alive():
    check(loaded() == ["smol"], loaded())
    m = client.ps().models[0]
    check(m.size > 50_000_000 and m.size_vram == 0 and m.expires_at is not None, m)
    # keep_alive 0 on an empty prompt unloads now.
    r = client.generate(model="smol", prompt="", keep_alive=0)
    check(r.done and r.done_reason == "unload", r)
    check(loaded() == [], loaded())
    # An empty prompt loads; a short keep_alive then unloads it by itself.
    r = client.generate(model="smol", prompt="", keep_alive="1s")
    check(r.done_reason == "load" and loaded() == ["smol"], (r, loaded()))
    deadline = time.monotonic() + 20
    while loaded() and time.monotonic() < deadline:
        time.sleep(0.2)
    check(loaded() == [], "keep_alive 1s did not unload the model")
    # keep_alive 0 on a real request unloads once it finishes.
    client.generate(model="smol", prompt="Hi", options=GREEDY, keep_alive=0, stream=False)
    check(loaded() == [], loaded())
    # Negative: kept (expires far in the future).
    client.generate(model="smol", prompt="", keep_alive=-1)
    check(client.ps().models[0].expires_at.year > 2100, client.ps().models[0])


def test_copy_delete_and_errors():
    client.copy("smol", "smol-copy")
    check(sorted(m.model for m in client.list().models) == ["smol", "smol-copy"], client.list())
    check(client.generate(model="smol-copy:latest", prompt="Hi", options=GREEDY, stream=False).done, "copy runs")
    client.delete("smol-copy")
    check([m.model for m in client.list().models] == ["smol"], client.list())
    for call in [lambda: client.generate(model="nope", prompt="x", stream=False), lambda: client.show("nope"),
                 lambda: client.delete("nope"),
                 lambda: client.chat(model="nope", messages=[{"role": "user", "content": "x"}], stream=False)]:
        try:
            call()
        except ollama.ResponseError as e:
            check(e.status_code == 404 and "not found" in e.error, e)
        else:
            raise AssertionError("unknown model accepted")
    raw = httpx.Client(base_url=BASE, timeout=30)
    for body, what in [(b"{", "malformed"), (b'{"model": "smol", "prompt": 3}', "wrong type"),
                       (b'{"model": "smol", "prompt": "x", "options": {"num_predict": -5}}', "bad num_predict"),
                       (b'{"model": "smol", "prompt": "x", "keep_alive": "soon"}', "bad keep_alive")]:
        r = raw.post("/api/generate", content=body)
        check(r.status_code == 400 and isinstance(r.json()["error"], str), f"{what}: {r.status_code} {r.text}")
    check(raw.post("/api/pull", json={"model": "x"}).status_code == 501, "pull is 501")
    check(raw.post("/api/embed", json={"model": "smol", "input": "x"}).status_code == 501, "embed is 501")


def main():
    test_metadata()
    expected = test_generate()
    test_options(expected)
    test_chat()
    test_ps_and_keep_alive()
    test_copy_delete_and_errors()
    print("ollama_api: all checks passed")


main()
