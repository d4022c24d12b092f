#!/usr/bin/env python3
"""Make the expected renderings that herd's chat-template tests compare against.

What it does, exactly:

1. Writes the test inputs to `crates/herd-model/tests/fixtures/templates/cases.json`: a fixed
   clock, the special tokens, and a few conversations (`CASES` below). The Rust test reads the
   same file, so both sides render the same data.
2. For every `*.jinja` file in `<shared>/models/templates/` and every case, calls transformers'
   own `transformers.utils.chat_template_utils.render_jinja_template` — the function that
   `PreTrainedTokenizerBase.apply_chat_template(..., tokenize=False)` calls after it normalises
   the messages — with the same arguments that `apply_chat_template` passes:
   `conversations=[messages]`, `tools`, `documents=None`, `chat_template`,
   `add_generation_prompt`, and the special tokens as extra keyword arguments (as
   `{**tokenizer.special_tokens_map, **kwargs}` does). Before that the messages go through
   `_normalize_chat_messages` (drops keys whose value is None), also as `apply_chat_template`
   does. transformers compiles the template in an `ImmutableSandboxedEnvironment(trim_blocks=True,
   lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols])` with its own `tojson`,
   `raise_exception`, `strftime_now`, `dict` and `namespace`.
3. `strftime_now` reads `datetime.now()` from that module; the script replaces the module's
   `datetime` by a subclass whose `now()` returns the fixed clock in `cases.json`, so the
   fixtures do not change from day to day (herd's test passes the same clock).
4. Writes `crates/herd-model/tests/fixtures/templates/expected/<template>.json`: for each case
   either `{"output": rendered}` or, when rendering raised, `{"error": message, "raised": bool}`
   where `raised` is true when the template itself called `raise_exception` (transformers raises
   a plain `jinja2.exceptions.TemplateError` for it, every other failure is a subclass or a
   Python error) — herd must then fail with that message; otherwise herd must merely fail.

Requirements: `pip install transformers jinja2` (no torch needed). Run from the repository root:
`python3 scripts/make_template_fixtures.py [--shared ../shared]`.
"""

import argparse
import datetime as _dt
import json
import pathlib
import sys

import jinja2
import transformers
from transformers.utils import chat_template_utils as ctu

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/herd-model/tests/fixtures/templates"

NOW = "2024-07-26T09:05:03"
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer briefly."}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The city and country, e.g. \"Paris, France\"",
                },
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "description": "Forecast days", "default": 1},
            },
            "required": ["location"],
        },
    },
}

TURNS = [
    {"role": "user", "content": "Hello! What's the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And how many people live there?\nA rough number is fine."},
]

CASES = {
    # The main test: a system prompt and three turns, asking for the next assistant turn.
    "chat": {"messages": [SYSTEM, *TURNS], "add_generation_prompt": True},
    # The same without a system prompt: templates insert their default one.
    "chat_no_system": {"messages": TURNS, "add_generation_prompt": True},
    # Tools: the definitions, an assistant tool call (arguments as a dict, as transformers
    # documents it, with an empty `content` as OpenAI-style clients send), the tool's result
    # and a final answer.
    "tools": {
        "messages": [
            SYSTEM,
            {"role": "user", "content": "What's the weather like in Paris today?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call12345",
                        "type": "function",
                        "function": {
                            "name": "get_current_weather",
                            "arguments": {"location": "Paris, France", "unit": "celsius"},
                        },
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call12345",
                "name": "get_current_weather",
                "content": "{\"temperature\": 22.5, \"condition\": \"sunny\"}",
            },
            {"role": "assistant", "content": "It is sunny in Paris, 22.5 °C."},
            {"role": "user", "content": "Thanks! Should I take an umbrella?"},
        ],
        "tools": [WEATHER_TOOL],
        "add_generation_prompt": True,
    },
}


# Reasoning models: an earlier answer with its reasoning (transformers shows it to the template
# as `reasoning_content` and `thinking`). Then content given as a list of text parts, as
# OpenAI-style clients send it (many templates expect a string and fail, in Python too).
CASES["reasoning"] = {
    "messages": [
        SYSTEM,
        {"role": "user", "content": "What is 17 * 3?"},
        {"role": "assistant", "reasoning_content": "17 * 3 = 51.", "content": "51"},
        {"role": "user", "content": "And 51 / 3?"},
    ],
    "add_generation_prompt": True,
}
CASES["content_parts"] = {
    "messages": [
        SYSTEM,
        {"role": "user", "content": [{"type": "text", "text": "Describe Paris"}, {"type": "text", "text": "in one line."}]},
    ],
    "add_generation_prompt": True,
}

# The same tool call without any `content` key, as in transformers' documentation (many
# templates read `message.content` unguarded and fail on it, in Python too).
CASES["tools_no_content"] = json.loads(json.dumps(CASES["tools"]))
del CASES["tools_no_content"]["messages"][2]["content"]


class FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls.fromisoformat(NOW)


def render(source, case):
    messages = ctu._normalize_chat_messages(case["messages"])
    rendered, _ = ctu.render_jinja_template(
        conversations=[messages],
        tools=case.get("tools"),
        documents=None,
        chat_template=source,
        add_generation_prompt=case.get("add_generation_prompt", False),
        **SPECIAL_TOKENS,
    )
    return rendered[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    args = ap.parse_args()
    ctu.datetime = FixedDatetime

    templates = sorted((pathlib.Path(args.shared) / "models/templates").glob("*.jinja"))
    if not templates:
        sys.exit(f"no templates under {args.shared}/models/templates")
    OUT.joinpath("expected").mkdir(parents=True, exist_ok=True)
    cases = {
        "generator": f"scripts/make_template_fixtures.py with transformers {transformers.__version__}, "
        f"jinja2 {jinja2.__version__}",
        "now": NOW,
        "special_tokens": SPECIAL_TOKENS,
        "cases": CASES,
    }
    OUT.joinpath("cases.json").write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")

    for path in templates:
        source = path.read_text(encoding="utf-8")
        expected = {}
        for name, case in CASES.items():
            try:
                expected[name] = {"output": render(source, case)}
            except Exception as e:  # noqa: BLE001 - any failure is an expected outcome
                raised = type(e) is jinja2.exceptions.TemplateError
                expected[name] = {"error": f"{type(e).__name__}: {e}" if not raised else str(e), "raised": raised}
        OUT.joinpath("expected", path.stem + ".json").write_text(
            json.dumps(expected, indent=1, ensure_ascii=False) + "\n"
        )
        summary = ", ".join(f"{k}: {'ok' if 'output' in v else 'ERR ' + v['error'][:60]}" for k, v in expected.items())
        print(f"{path.stem}: {summary}")


if __name__ == "__main__":
    main()
