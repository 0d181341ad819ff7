#!/usr/bin/env python3
"""Generate tokenizer parity fixtures from llama.cpp (the reference) for the test models.

For every string in tests/fixtures/tokenizer/corpus.json this asks a running `llama-server`
(one per model) for:
  * `prompt`: ids with add_special=true, parse_special=true -- how the engine feeds a rendered chat
    prompt (BOS per the model's metadata, special-token text such as <|im_start|> becomes the token);
  * `raw`:    ids with add_special=false, parse_special=false -- user text that must not be able to
    inject control tokens;
  * `detok`:  /detokenize of the `prompt` ids (the concatenated pieces, special tokens rendered).

`llama-server` is used rather than `llama-tokenize` because one process serves all strings and it
exposes both flags plus detokenization. Only the Python standard library is needed.

Usage: scripts/gen-tokenizer-fixtures.py [--bin DIR] [--models DIR]
Writes tests/fixtures/tokenizer/<name>.json; the Rust test (crates/hearth-formats/tests/
tokenizer_parity.rs) compares hearth's tokenizer against these files, so CI needs no llama.cpp.
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "tokenizer"
MODELS = {
    "smollm2-135m": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma-3-270m": "gemma-3-270m-q4_k_m.gguf",
}


def default_models_dir() -> Path:
    if os.environ.get("HEARTH_TEST_MODELS"):
        return Path(os.environ["HEARTH_TEST_MODELS"])
    cache = os.environ.get("HEARTH_DEV_CACHE", str(Path.home() / ".cache" / "hearth-dev"))
    return Path(cache) / "models"


def default_bin_dir() -> Path:
    cache = Path(os.environ.get("HEARTH_DEV_CACHE", str(Path.home() / ".cache" / "hearth-dev")))
    found = sorted(cache.glob("llama.cpp-*/build/bin"))
    if not found:
        sys.exit("llama.cpp not built: run scripts/build-llama-cpp.sh or pass --bin")
    return found[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, path: str, body: dict):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read().decode("utf-8"))


def wait_healthy(port: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"llama-server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit("llama-server did not become healthy in 120 s")


def server_version(bin_dir: Path) -> str:
    out = subprocess.run([str(bin_dir / "llama-server"), "--version"], capture_output=True, text=True)
    lines = (out.stdout + out.stderr).strip().splitlines()
    return next((l for l in lines if l.startswith("version")), "unknown")


def special_ids(bin_dir: Path, model: Path) -> dict:
    """BOS/EOS/UNK/PAD ids and the end-of-generation set, from llama.cpp's verbose load log."""
    out = subprocess.run([str(bin_dir / "llama-tokenize"), "-m", str(model), "-p", "x", "--verbose"],
                         capture_output=True, text=True)
    log = out.stdout + out.stderr
    ids = {}
    for name in ("BOS", "EOS", "UNK", "PAD"):
        m = re.search(rf"print_info: {name} token\s+= (\d+) ", log)
        ids[name.lower()] = int(m.group(1)) if m else None
    ids["eog"] = sorted(int(x) for x in re.findall(r"print_info: EOG token\s+= (\d+) ", log))
    return ids


def fixture_for(port: int, corpus: list) -> list:
    cases = []
    for text in corpus:
        prompt = post(port, "/tokenize", {"content": text, "add_special": True, "parse_special": True})["tokens"]
        raw = post(port, "/tokenize", {"content": text, "add_special": False, "parse_special": False})["tokens"]
        detok = post(port, "/detokenize", {"tokens": prompt})["content"]
        cases.append({"text": text, "prompt": prompt, "raw": raw, "detok": detok})
    return cases


def render(file: str, version: str, specials: dict, cases: list) -> str:
    """JSON with one case per line, so fixture diffs stay readable."""
    head = (f'{{\n "model": {json.dumps(file)},\n "llama_cpp": {json.dumps(version)},\n'
            f' "specials": {json.dumps(specials)},\n "cases": [\n')
    body = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases)
    return head + body + "\n ]\n}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", type=Path, default=None, help="llama.cpp build/bin directory")
    ap.add_argument("--models", type=Path, default=None, help="directory holding the test GGUFs")
    args = ap.parse_args()
    bin_dir = args.bin or default_bin_dir()
    models_dir = args.models or default_models_dir()
    corpus = json.loads((FIXTURES / "corpus.json").read_text(encoding="utf-8"))
    version = server_version(bin_dir)

    for name, file in MODELS.items():
        path = models_dir / file
        if not path.exists():
            sys.exit(f"missing test model {path} (run scripts/fetch-models.sh)")
        port = free_port()
        cmd = [str(bin_dir / "llama-server"), "-m", str(path), "--host", "127.0.0.1", "--port", str(port),
               "-c", "512", "-np", "1", "-ngl", "0", "--no-warmup"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_healthy(port, proc)
            cases = fixture_for(port, corpus)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        dest = FIXTURES / f"{name}.json"
        dest.write_text(render(file, version, special_ids(bin_dir, path), cases), encoding="utf-8")
        print(f"wrote {dest} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
