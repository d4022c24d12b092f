"""herd serve against the official `openai` Python client (PyPI).

Run by crates/herd/tests/openai_client.rs, which starts two servers:
  HERD_STORIES_URL  stories260K.gguf with --template vicuna-v1.1 --api-key sk-herd-test --parallel 8
  HERD_TINY_URL     the hf-tiny qwen2 folder (its own ChatML template), no key
and passes the llama.cpp fixture of stories260K's greedy continuation as HERD_STORY_FIXTURE.
Exits non-zero with a message on the first failure.
"""
import concurrent.futures
import json
import os
import sys

import openai
from openai import OpenAI

KEY = "sk-herd-test"
stories = OpenAI(base_url=os.environ["HERD_STORIES_URL"] + "/v1", api_key=KEY, max_retries=0)
tiny = OpenAI(base_url=os.environ["HERD_TINY_URL"] + "/v1", api_key="unused", max_retries=0)
fixture = json.load(open(os.environ["HERD_STORY_FIXTURE"]))
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


# Models.
models = stories.models.list()
check([m.id for m in models.data] == ["stories260K"], f"models list: {models}")

# Completions, greedy: llama.cpp's text, token for token.
n_new = len(fixture["greedy_new_ids"])
r = stories.completions.create(model="stories260K", prompt=fixture["prompt"], max_tokens=n_new,
                               temperature=0, extra_body={"ignore_eos": True})
check(r.choices[0].text == fixture["continuation_text"], f"greedy completion: {r.choices[0].text!r}")
check(r.usage.completion_tokens == n_new and r.usage.prompt_tokens == len(fixture["prompt_ids"]), f"usage {r.usage}")
check(r.choices[0].finish_reason == "length", "finish_reason length")

# Streaming completions give the same text.
chunks = stories.completions.create(model="stories260K", prompt=fixture["prompt"], max_tokens=n_new,
                                    temperature=0, stream=True, stream_options={"include_usage": True},
                                    extra_body={"ignore_eos": True})
text, usage = "", None
for c in chunks:
    if c.choices:
        text += c.choices[0].text
    if c.usage:
        usage = c.usage
check(text == fixture["continuation_text"], f"streamed completion: {text!r}")
check(usage is not None and usage.completion_tokens == n_new, f"stream usage: {usage}")

# Stop strings, also when split across tokens; not included in the text.
full = fixture["continuation_text"]
stop = "irl nam"
r = stories.completions.create(model="stories260K", prompt=fixture["prompt"], max_tokens=n_new, temperature=0, stop=[stop, "zzz"])
check(r.choices[0].text == full[: full.index(stop)] and r.choices[0].finish_reason == "stop", f"stop: {r.choices[0].text!r}")

# Seeds: the same seed gives the same sample; n=2 gives two different ones.
def sample(seed):
    return stories.completions.create(model="stories260K", prompt="Once upon a time", max_tokens=40,
                                      temperature=1.0, seed=seed).choices[0].text
a = sample(7)
check(a == sample(7), "seed reproducibility")
check(a != sample(8), "different seeds differ")
r = stories.completions.create(model="stories260K", prompt="Once upon a time", max_tokens=30, temperature=1.0, n=2, seed=3)
check(len(r.choices) == 2 and r.choices[0].text != r.choices[1].text and {c.index for c in r.choices} == {0, 1}, f"n=2: {r.choices}")

# Logprobs with echo (what lm-evaluation-harness asks for): prompt tokens scored, first is None.
r = stories.completions.create(model="stories260K", prompt="Once upon a time", max_tokens=0, echo=True, logprobs=1, temperature=0)
lp = r.choices[0].logprobs
check(r.choices[0].text == "Once upon a time", f"echo text {r.choices[0].text!r}")
check(lp.token_logprobs[0] is None and all(x < 0 for x in lp.token_logprobs[1:]), f"echo logprobs {lp.token_logprobs}")
check("".join(lp.tokens) == "Once upon a time" and len(lp.tokens) == 5, f"echo tokens {lp.tokens}")

# Chat: non-streaming and streaming agree at temperature 0; logprobs with alternatives.
msgs = [{"role": "system", "content": "You tell stories."}, {"role": "user", "content": "Tell me about a cat."}]
r = stories.chat.completions.create(model="stories260K", messages=msgs, max_tokens=30, temperature=0, logprobs=True, top_logprobs=3)
check(r.choices[0].message.role == "assistant" and len(r.choices[0].message.content) > 0, "chat content")
content = r.choices[0].logprobs.content
check(len(content) == r.usage.completion_tokens and all(len(t.top_logprobs) == 3 for t in content), "chat logprobs")
check(all(t.top_logprobs[0].logprob >= t.logprob - 1e-6 for t in content), "greedy picks the top logprob")
s = stories.chat.completions.create(model="stories260K", messages=msgs, max_tokens=30, temperature=0, stream=True)
streamed = "".join(c.choices[0].delta.content or "" for c in s if c.choices)
check(streamed == r.choices[0].message.content, f"chat stream {streamed!r} vs {r.choices[0].message.content!r}")

# JSON mode: the output parses (the tiny random model would never write JSON by itself).
for client, model in [(stories, "stories260K"), (tiny, "qwen2")]:
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Answer in JSON."}],
                                       response_format={"type": "json_object"}, max_tokens=60, temperature=0.7, seed=1)
    obj = json.loads(r.choices[0].message.content)
    check(isinstance(obj, dict), f"json_object mode: {r.choices[0].message.content!r}")
schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
          "pet": {"enum": ["cat", "dog"]}}, "required": ["name", "age", "pet"], "additionalProperties": False}
r = tiny.chat.completions.create(model="qwen2", messages=[{"role": "user", "content": "A person."}], max_tokens=80,
                                 response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
obj = json.loads(r.choices[0].message.content)
check(set(obj) == {"name", "age", "pet"} and isinstance(obj["age"], int) and obj["pet"] in ("cat", "dog"), f"json_schema: {obj}")

# Tight budgets with open schemas (extra keys allowed, nested objects): the output must still
# close in time, whatever the sampler opens near the end.
open_schema = {"type": "object", "properties": {"verdict": {"type": "string"},
               "detail": {"type": "object", "properties": {"score": {"type": "number"}}}},
               "required": ["verdict", "detail"]}
bad = []
for seed in range(12):
    for max_tokens in (24, 48):
        r = tiny.chat.completions.create(model="qwen2", messages=[{"role": "user", "content": "Judge."}],
                                         max_tokens=max_tokens, temperature=1.0, seed=seed,
                                         response_format={"type": "json_schema", "json_schema": {"name": "j", "schema": open_schema}})
        text = r.choices[0].message.content
        try:
            obj = json.loads(text)
            if not ("verdict" in obj and isinstance(obj["detail"], dict)):
                bad.append(text)
        except ValueError:
            bad.append(text)
        if r.usage.completion_tokens > max_tokens:
            bad.append(f"{r.usage.completion_tokens} tokens > {max_tokens}")
check(not bad, f"open schemas under tight budgets: {bad[:3]}")

# Tool call round trip through the model's template.
tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
r = tiny.chat.completions.create(model="qwen2", messages=msgs, tools=tools, max_tokens=40,
                                 tool_choice={"type": "function", "function": {"name": "get_weather"}})
call = r.choices[0].message.tool_calls[0]
check(r.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather", f"tool call {r.choices[0]}")
args = json.loads(call.function.arguments)
check(isinstance(args.get("city"), str), f"tool arguments {args}")
msgs += [r.choices[0].message.model_dump(exclude_none=True),
         {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature_c": 21})}]
r = tiny.chat.completions.create(model="qwen2", messages=msgs, tools=tools, max_tokens=10, temperature=0)
check(r.choices[0].message.content is not None and r.usage.prompt_tokens > 20, "answer after the tool result")
# The same call, streamed.
s = tiny.chat.completions.create(model="qwen2", messages=msgs[:1], tools=tools, max_tokens=40, stream=True, tool_choice="required")
calls = [tc for c in s if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
check(len(calls) == 1 and json.loads(calls[0].function.arguments).get("city") is not None, f"streamed tool call {calls}")

# Errors: unknown model 404, unsupported field 400 naming it, wrong key 401.
try:
    tiny.chat.completions.create(model="gpt-5", messages=msgs[:1])
    check(False, "unknown model accepted")
except openai.NotFoundError as e:
    check(e.status_code == 404 and "gpt-5" in str(e), f"404: {e}")
try:
    tiny.chat.completions.create(model="qwen2", messages=msgs[:1], extra_body={"mirostat": 2})
    check(False, "unknown field accepted")
except openai.BadRequestError as e:
    check("mirostat" in str(e), f"400: {e}")
try:
    OpenAI(base_url=os.environ["HERD_STORIES_URL"] + "/v1", api_key="wrong", max_retries=0).models.list()
    check(False, "wrong key accepted")
except openai.AuthenticationError as e:
    check(e.status_code == 401, f"401: {e}")
try:
    stories.completions.create(model="stories260K", prompt="Once upon a time " * 400, max_tokens=10)
    check(False, "over-long prompt accepted")
except openai.BadRequestError as e:
    check("maximum context length" in str(e), f"context 400: {e}")

# Embeddings: one vector per input, the model's hidden size, identical inputs identical.
e = tiny.embeddings.create(model="qwen2", input=["hello", "world", "hello"])
v = [d.embedding for d in e.data]
check(len(v) == 3 and len(v[0]) == 64 and v[0] == v[2] and v[0] != v[1], "embeddings")

# Batched decoding gives the tokens each request gets alone: 8 concurrent greedy requests of
# different lengths against one-at-a-time runs.
prompts = ["Once upon a time", "Lily", "The little bird was very", "One day, a big dog", "Tom and",
           "She liked to play with her friends in the park every day", "A", "The sun was"]
def run(p):
    return stories.completions.create(model="stories260K", prompt=p, max_tokens=24 + len(p) % 7, temperature=0,
                                      extra_body={"ignore_eos": True}).choices[0].text
alone = [run(p) for p in prompts]
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    together = list(pool.map(run, prompts))
check(alone == together, f"batched vs alone:\n{alone}\n{together}")

print(f"openai client: {checks} checks passed")
