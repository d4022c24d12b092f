#!/usr/bin/env python3
"""herd vs llama.cpp on the same GGUF files, same thread counts, in one run, alternating.

For every model × thread count × test (pp512: a 512-token prompt in one batch; tg128: 128
tokens decoded one at a time), runs `herd bench` and llama.cpp's `llama-bench` back to back
(which one goes first alternates), each with its own warm-up and R repetitions, and prints a
Markdown table of tokens/s for both and the ratio herd / llama.cpp. Decode speed is also given
as a fraction of the memory-bandwidth limit: bandwidth (bench/membw.c, same machine, same
threads, measured just before and just after each decode pair, the mean) ÷ bytes of weights
read per token (every matrix, plus one embedding row).

  python3 bench/bench_vs_llama_cpp.py [--models DIR or files] [--threads 1,2] [-r 3]
      [--tests pp512,tg128] [--herd target/release/herd] [--llama-cpp DIR]
      [--llama-bench PATH] [--json out.jsonl]

Build herd with `cargo build --release` first; llama.cpp as bench/README.md says.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def weight_bytes_per_token(path: Path) -> int:
    r = gguf.GGUFReader(str(path))
    total, embd, tied = 0, 0, True
    for t in r.tensors:
        n = int(t.n_bytes)
        if t.name == "token_embd.weight":
            embd = n
        elif t.name == "output.weight":
            tied = False
            total += n
        else:
            total += n
    return total + (embd if tied else 0)


def test_args(test: str) -> list[str]:
    """llama-bench's (and herd bench's) arguments for a test such as pp512, tg128 or
    tg128@d2048 (128 tokens generated after 2048 already in the cache)."""
    kind, rest = test[:2], test[2:]
    n, _, depth = rest.partition("@d")
    if kind not in ("pp", "tg") or not n.isdigit() or not (depth == "" or depth.isdigit()):
        sys.exit(f"test {test!r}: expected ppN or tgN, optionally @dD (as tg128@d2048)")
    args = ["-p", n, "-n", "0"] if kind == "pp" else ["-p", "0", "-n", n]
    return args + (["-d", depth] if depth else [])


def herd_run(herd: Path, model: Path, threads: int, test: str, reps: int) -> float:
    args = [str(herd), "bench", str(model), "-t", str(threads), "-r", str(reps), "--json"]
    args += test_args(test)
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return float(rows[0]["tokens_per_second"])


def llama_run(bench: Path, model: Path, threads: int, test: str, reps: int) -> float:
    args = [str(bench), "-m", str(model), "-t", str(threads), "-r", str(reps), "-o", "jsonl"]
    args += test_args(test)
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return float(rows[0]["avg_ts"])


def bandwidth(threads: int) -> float:
    # Named for the source's hash, so an edited membw.c is never measured by a stale build.
    src = (HERE / "membw.c").read_bytes()
    exe = Path(tempfile.gettempdir()) / f"herd-membw-{hashlib.sha256(src).hexdigest()[:12]}"
    if not exe.exists():
        subprocess.run(["gcc", "-O3", "-march=native", "-ffast-math", "-pthread",
                        str(HERE / "membw.c"), "-o", str(exe)], check=True)
    return float(subprocess.run([str(exe), str(threads)], check=True, capture_output=True,
                                text=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", type=Path,
                    default=[Path(os.environ.get("HERD_BENCH_MODELS", Path.home() / ".cache/herd-bench"))])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--tests", default="pp512,tg128",
                    help="comma-separated: ppN, tgN, and either with @dD to start after D tokens "
                         "in the cache (tg128@d2048); the bandwidth limit is given for tgN only, "
                         "as it counts the weights' bytes, not the cache's (both engines keep "
                         "f16 caches by default)")
    ap.add_argument("-r", "--reps", type=int, default=3)
    ap.add_argument("--herd", type=Path, default=ROOT / "target/release/herd")
    ap.add_argument("--llama-cpp", type=Path, default=Path(os.environ.get("LLAMA_CPP", "/work/cache/llama.cpp")))
    ap.add_argument("--llama-bench", type=Path,
                    help="this llama-bench instead of the one in --llama-cpp's build/bin "
                         "(such as an AVX2-only build, to compare as on a CPU without AVX-512)")
    ap.add_argument("--json", type=Path, help="also append one JSON object per row to this file")
    a = ap.parse_args()
    models = []
    for m in a.models:
        models += sorted(m.glob("*.gguf")) if m.is_dir() else [m]
    if not models:
        sys.exit("no .gguf models: run bench/make_bench_models.py, or pass --models")
    llama_bench = a.llama_bench or a.llama_cpp / "build/bin/llama-bench"
    for exe in (a.herd, llama_bench):
        if not exe.exists():
            sys.exit(f"{exe} not found (bench/README.md says how to build it)")
    threads = [int(t) for t in a.threads.split(",")]
    print("| model | size | threads | test | llama.cpp t/s | herd t/s | herd / llama.cpp | herd % of bandwidth limit | llama.cpp % | bandwidth GB/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    sink = open(a.json, "a") if a.json else None
    flip = False
    for model in models:
        per_token = weight_bytes_per_token(model)
        for t in threads:
            for test in a.tests.split(","):
                flip = not flip
                order = [("herd", herd_run, a.herd), ("llama.cpp", llama_run, llama_bench)]
                if flip:
                    order.reverse()
                decode = test.startswith("tg") and "@" not in test
                # This machine's bandwidth drifts by a third between minutes (other tenants):
                # measured just before and just after the pair, the limit belongs to the row.
                before = bandwidth(t) if decode else None
                res = {name: fn(exe, model, t, test, a.reps) for name, fn, exe in order}
                bw = (before + bandwidth(t)) / 2 if decode else None
                ratio = res["herd"] / res["llama.cpp"]
                limit = bw * 1e9 / per_token if decode else None
                frac = (lambda v: f"{100 * v / limit:.0f}%") if decode else (lambda v: "")
                print(f"| {model.stem} | {model.stat().st_size / 1e9:.2f} GB | {t} | {test} | "
                      f"{res['llama.cpp']:.2f} | {res['herd']:.2f} | {ratio:.2f} | {frac(res['herd'])} | "
                      f"{frac(res['llama.cpp'])} | {f'{bw:.1f}' if decode else ''} |",
                      flush=True)
                if sink:
                    sink.write(json.dumps({"model": model.name, "threads": t, "test": test,
                                           "llama_cpp": res["llama.cpp"], "herd": res["herd"],
                                           "ratio": ratio, "bandwidth_gb_s": bw,
                                           "bytes_per_token": per_token}) + "\n")
                    sink.flush()


if __name__ == "__main__":
    main()
