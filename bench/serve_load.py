#!/usr/bin/env python3
"""Load test: herd serve and llama-server side by side on the same GGUF model.

For each number of concurrent streaming clients (1, 4, 16, 64 by default) each server gets
the same fixed number of requests (streaming completions, greedy, a fixed number of new
tokens, EOS ignored), on loopback only, with a time limit. Prints aggregate generated
tokens/s, mean time to first token and errors for both, and the ratio herd / llama.cpp.
Also checks that herd's resident memory is flat: the RSS after a second identical round is
compared with the first.

  pip install openai
  python3 bench/serve_load.py --model ../shared/models/stories260K/stories260K.gguf \
      --herd target/release/herd --llama-server /path/to/llama.cpp/build/bin/llama-server

Each server runs with as many parallel sequences as clients (herd --parallel N,
llama-server -np N), the same context per sequence and the same thread count.
"""
import argparse
import asyncio
import os
import re
import subprocess
import sys
import time

from openai import AsyncOpenAI


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start(kind, args, parallel, port):
    ctx = args.ctx
    if kind == "herd":
        cmd = [args.herd, "serve", args.model, "--port", str(port), "--parallel", str(parallel), "--ctx", str(ctx),
               "-t", str(args.threads), "--max-queue", "1024", "--name", "model"]
    else:
        cmd = [args.llama_server, "-m", args.model, "--port", str(port), "-np", str(parallel), "-c", str(ctx * parallel),
               "-t", str(args.threads), "-tb", str(args.threads), "--no-webui", "-a", "model"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    client = AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=args.time_limit)
    return p, client


async def wait_ready(client, proc):
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            await client.models.list()
            return
        except Exception:
            await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


async def one(client, prompt, max_tokens):
    t0 = time.perf_counter()
    first = None
    tokens = 0
    stream = await client.completions.create(model="model", prompt=prompt, max_tokens=max_tokens, temperature=0,
                                             stream=True, stream_options={"include_usage": True},
                                             extra_body={"ignore_eos": True})
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].text and first is None:
            first = time.perf_counter() - t0
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return tokens, first or 0.0


async def round_(client, clients, requests, max_tokens, deadline):
    prompts = [f"Once upon a time there was a {w}" for w in ["dog", "cat", "bird", "girl", "boy", "tree", "king", "fish"]]
    queue = list(range(requests))
    results, errors = [], []

    async def worker():
        while queue and time.perf_counter() < deadline:
            i = queue.pop()
            try:
                results.append(await one(client, prompts[i % len(prompts)], max_tokens))
            except Exception as e:  # counted, reported
                errors.append(repr(e))

    t0 = time.perf_counter()
    # A request still streaming at the deadline is cut by the client's timeout (= the time
    # limit) and counted as an error, so a stalled server cannot hang the run.
    await asyncio.gather(*[worker() for _ in range(clients)])
    wall = time.perf_counter() - t0
    toks = sum(r[0] for r in results)
    ttft = sum(r[1] for r in results) / max(1, len(results))
    return toks / wall, ttft, len(results), errors


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--herd", default="target/release/herd")
    ap.add_argument("--llama-server", default=os.environ.get("LLAMA_SERVER", ""))
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--requests", type=int, default=64, help="requests per round")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=512, help="context per sequence")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=120, help="seconds per round")
    args = ap.parse_args()
    kinds = ["herd"] + (["llama.cpp"] if args.llama_server else [])
    rows = []
    port = 18700
    for n in [int(x) for x in args.clients.split(",")]:
        row = {"clients": n}
        for kind in kinds:
            port += 1
            proc, client = start(kind, args, n, port)
            try:
                await wait_ready(client, proc)
                await round_(client, min(n, 4), min(8, args.requests), 8, time.perf_counter() + 30)  # warm-up
                rate, ttft, done, errors = await round_(client, n, args.requests, args.max_tokens,
                                                        time.perf_counter() + args.time_limit)
                row[kind] = (rate, ttft, done, len(errors))
                if kind == "herd":
                    before = rss_mib(proc.pid)
                    await round_(client, n, args.requests, args.max_tokens, time.perf_counter() + args.time_limit)
                    row["rss"] = (before, rss_mib(proc.pid))
                if errors:
                    print(f"{kind} {n} clients: {len(errors)} errors, e.g. {errors[0]}", file=sys.stderr)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        rows.append(row)
        print(row, file=sys.stderr)
    print(f"\nmodel {args.model}, {args.requests} streaming requests per round, {args.max_tokens} new tokens each, "
          f"{args.threads} threads, context {args.ctx} per sequence\n")
    head = "| clients | herd tok/s | herd TTFT s | herd errors | herd RSS MiB (after round 1 → 2) |"
    sep = "| ---: | ---: | ---: | ---: | ---: |"
    if "llama.cpp" in kinds:
        head += " llama.cpp tok/s | llama.cpp TTFT s | llama.cpp errors | herd / llama.cpp |"
        sep += " ---: | ---: | ---: | ---: |"
    print(head)
    print(sep)
    for r in rows:
        h = r["herd"]
        line = f"| {r['clients']} | {h[0]:.1f} | {h[1]:.3f} | {h[3]} | {r['rss'][0]:.0f} → {r['rss'][1]:.0f} |"
        if "llama.cpp" in r:
            l = r["llama.cpp"]
            line += f" {l[0]:.1f} | {l[1]:.3f} | {l[3]} | {h[0] / l[0]:.2f} |"
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
