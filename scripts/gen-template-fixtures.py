#!/usr/bin/env python3
"""Generate chat-template parity fixtures with Hugging Face's renderer (the reference).

Renders every template in tests/fixtures/templates/sources/*.jinja, plus SmolLM2's template read from
its GGUF (`tokenizer.chat_template`), over a set of conversations with add_generation_prompt false and
true, and writes tests/fixtures/templates/<name>.json with the template source, the inputs and either
the expected text or the expected error. crates/hearth-formats/tests/chat_template_parity.rs renders the
same inputs with hearth and compares byte for byte, so CI needs no Python.

Renderer: transformers' own `render_jinja_template` when transformers is importable (it needs no
torch); otherwise a replica of the jinja2 environment transformers builds (sandboxed, trim_blocks,
lstrip_blocks, loop controls, tojson = json.dumps(ensure_ascii=False), raise_exception, strftime_now).
`strftime_now` is pinned to FIXED_NOW so the fixtures are reproducible.

Usage: scripts/gen-template-fixtures.py   (needs jinja2; gguf to read SmolLM2's template)
"""

import datetime as _dt
import json
import os
import sys
from pathlib import Path

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "templates"
SOURCES = OUT / "sources"
FIXED_NOW = _dt.datetime(2024, 7, 26, 14, 5, 9)

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "add", "description": "Add two numbers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number", "default": 0.5}},
                       "required": ["a"]}}},
]

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "Hello!"}],
    "system_user": [SYSTEM, {"role": "user", "content": "What is 2+2?"}],
    "multi_turn": [SYSTEM, {"role": "user", "content": "Hi there"},
                   {"role": "assistant", "content": "Hello! How can I help?"},
                   {"role": "user", "content": "Tell me a joke.\nMake it short?"}],
    "multi_turn_no_system": [{"role": "user", "content": "  Padded question?  "},
                             {"role": "assistant", "content": "Padded answer.\n"},
                             {"role": "user", "content": "Thanks"}],
    "unicode": [{"role": "user", "content": "Ünïcödé 中文 😀 \"quotes\" and \\ backslash\ttab"},
                {"role": "assistant", "content": "Ответ: «да» — ok"}],
    "bad_order": [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
    "assistant_first": [{"role": "assistant", "content": "I start"}, {"role": "user", "content": "hi"}],
    "tool_call": [SYSTEM, {"role": "user", "content": "What's the weather in Paris?"},
                  {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
                      "name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
                  {"role": "tool", "content": "{\"temperature\": 22, \"condition\": \"sunny\"}"},
                  {"role": "assistant", "content": "It is 22 °C and sunny in Paris."}],
    "reasoning": [{"role": "user", "content": "What is 2+2?"},
                  {"role": "assistant", "content": "<think>\nSimple sum.\n</think>\n\nIt is 4."},
                  {"role": "user", "content": "And 3+3?"},
                  {"role": "assistant", "content": "It is 6.", "reasoning_content": "Another sum."}],
    "stop_word": [SYSTEM, {"role": "user", "content": "First?"}, {"role": "assistant", "content": "Yes."},
                  {"role": "user", "content": "STOP"}, {"role": "user", "content": "never shown"}],
    "content_parts": [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                      {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " Describe this. "}]}],
}
BASIC = ["single_user", "system_user", "multi_turn", "multi_turn_no_system", "unicode"]

# name -> (source file or "gguf:<model>", bos, eos, conversation names, extra contexts)
TEMPLATES = {
    "smollm2": ("gguf:SmolLM2-135M-Instruct.Q4_1.gguf", "<|im_start|>", "<|im_end|>", BASIC, [{}]),
    "chatml_fallback": ("chatml_fallback.jinja", "", "", BASIC, [{}]),
    "llama3_2": ("llama3_2.jinja", "<|begin_of_text|>", "<|eot_id|>", BASIC + ["tool_call"],
                 [{}, {"tools": TOOLS}, {"tools": TOOLS, "tools_in_user_message": False}, {"date_string": "01 Jan 2025"}]),
    "qwen2_5": ("qwen2_5.jinja", "", "<|im_end|>", BASIC + ["tool_call"], [{}, {"tools": TOOLS}]),
    "mistral": ("mistral.jinja", "<s>", "</s>", BASIC + ["bad_order", "assistant_first"], [{}]),
    "gemma": ("gemma.jinja", "<bos>", "<eos>", BASIC + ["bad_order", "assistant_first", "content_parts"], [{}]),
    "qwen3_reasoning": ("qwen3_reasoning.jinja", "", "<|im_end|>", BASIC + ["tool_call", "reasoning"],
                        [{}, {"tools": TOOLS}, {"enable_thinking": False}]),
    "loop_controls": ("loop_controls.jinja", "", "", BASIC + ["stop_word"], [{}]),
    "tojson_misc": ("tojson_misc.jinja", "", "", ["single_user", "unicode", "tool_call"], [{}, {"tools": TOOLS}]),
}


class FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


def transformers_renderer():
    """transformers' own renderer with strftime_now pinned, or None when transformers is missing."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers import __version__ as version
        from transformers.utils import chat_template_utils as ctu
    except ImportError:
        return None
    ctu.datetime = FixedDatetime  # the module's strftime_now calls datetime.now()

    def render(source, messages, add_generation_prompt, context):
        out, _ = ctu.render_jinja_template(conversations=[messages], chat_template=source,
                                           add_generation_prompt=add_generation_prompt, **context)
        return out[0]
    return f"transformers {version}", render


def replica_renderer():
    """The environment transformers builds, for machines without transformers."""
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def render(source, messages, add_generation_prompt, context):
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: FIXED_NOW.strftime(fmt)
        ctx = {"tools": None, "documents": None, **context}
        return env.from_string(source).render(messages=alias_reasoning(messages),
                                              add_generation_prompt=add_generation_prompt, **ctx)
    return f"jinja2 {jinja2.__version__} (replica of transformers' environment)", render


def alias_reasoning(messages):
    """transformers copies `reasoning_content`/`thinking`/`reasoning` to `thinking` and `reasoning_content`."""
    out = []
    for m in messages:
        reasoning = next((m[k] for k in ("reasoning_content", "thinking", "reasoning") if m.get(k) is not None), None)
        out.append(m if reasoning is None else {"thinking": reasoning, **m, "reasoning_content": reasoning})
    return out


def gguf_template(model_file: str) -> str:
    from gguf import GGUFReader  # in scripts/requirements-dev.txt
    cache = Path(os.environ.get("HEARTH_DEV_CACHE", str(Path.home() / ".cache" / "hearth-dev")))
    models = Path(os.environ["HEARTH_TEST_MODELS"]) if os.environ.get("HEARTH_TEST_MODELS") else cache / "models"
    field = GGUFReader(models / model_file).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def load_source(spec: str) -> str:
    if spec.startswith("gguf:"):
        return gguf_template(spec[len("gguf:"):])
    return (SOURCES / spec).read_text(encoding="utf-8")


def render_case(render, source, tokens, conv, add_gen, extra):
    case = {"conversation": conv, "messages": CONVERSATIONS[conv], "add_generation_prompt": add_gen, "extra": extra}
    try:
        # bos/eos reach the template as context variables, like HF's special-tokens map.
        case["expected"] = render(source, CONVERSATIONS[conv], add_gen, {**tokens, **extra})
    except jinja2.exceptions.TemplateError as e:
        # Exactly TemplateError is raise_exception; subclasses (UndefinedError, ...) are other failures.
        kind = "raised" if type(e) is jinja2.exceptions.TemplateError else "other"
        case["error"] = {"kind": kind, "message": str(e)}
    return case


def main() -> None:
    renderer_name, render = transformers_renderer() or replica_renderer()
    (SOURCES / "chatml_fallback.jinja").write_text(chatml_fallback(), encoding="utf-8")
    for name, (spec, bos, eos, convs, extras) in TEMPLATES.items():
        source = load_source(spec)
        tokens = {"bos_token": bos, "eos_token": eos}
        cases = [render_case(render, source, tokens, conv, add_gen, extra)
                 for extra in extras for conv in convs for add_gen in (False, True)]
        out = {"name": name, "renderer": renderer_name, "now": FIXED_NOW.isoformat(), "bos_token": bos,
               "eos_token": eos, "source": source, "cases": cases}
        (OUT / f"{name}.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        ok = sum("expected" in c for c in cases)
        print(f"{name}: {ok} rendered, {len(cases) - ok} errors")
    print(f"renderer: {renderer_name}")


def chatml_fallback() -> str:
    """hearth's ChatTemplate::fallback() source, copied here so its fixture checks the same text."""
    return ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
            "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


if __name__ == "__main__":
    sys.exit(main())
