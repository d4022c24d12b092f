"""MT-bench judgment files in FastChat's format, and what FastChat's own code computes from them.

shared/ holds MT-bench's questions and model answers but no judgments (GPT-4's are not
redistributed there), so this writes judgment files of the shape FastChat's `gen_judgment.py`
writes (`model_judgment/gpt-4_single.jsonl`, `gpt-4_pair.jsonl`) for three of the models in
shared/data/mt_bench/model_answer, with judge texts drawn (seeded) from the forms judges write:
`Rating: [[7]]`, `[[8.5]]`, `[5]` (FastChat's backup pattern), a text with no rating, and for
pairs `[[A]]`, `[[B]]`, `[[C]]`, or no verdict. The `score` and `g1_winner` / `g2_winner` fields
are what FastChat's parsers make of those texts (`common.py`: `run_judge_single`,
`run_judge_pair`, copied below), and the expected results are computed by FastChat's
`show_result.py` formulas (`display_result_single`, `display_result_pairwise`, reimplemented
with pandas below, line for line), so herd's import is checked against FastChat's numbers, not
its own.

Writes crates/herd-eval/tests/fixtures/mt_bench_judgment/{gpt-4_single.jsonl,gpt-4_pair.jsonl,
expected.json}. Needs pandas.
"""
import ast
import json
import os
import random
import re

import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.abspath(os.environ.get("HERD_SHARED", os.path.join(HERE, "..", "..", "shared")))
OUT = os.path.join(HERE, "..", "crates", "herd-eval", "tests", "fixtures", "mt_bench_judgment")
MODELS = ["vicuna-13b-v1.3", "alpaca-13b", "llama-13b"]
BASELINE = "gpt-3.5-turbo"

# FastChat fastchat/llm_judge/common.py
one_score_pattern = re.compile(r"\[\[(\d+\.?\d*)\]\]")
one_score_pattern_backup = re.compile(r"\[(\d+\.?\d*)\]")


def fastchat_single_score(judgment):
    match = re.search(one_score_pattern, judgment)
    if not match:
        match = re.search(one_score_pattern_backup, judgment)
    if match:
        rating = ast.literal_eval(match.groups()[0])
    else:
        rating = -1
    return rating


def fastchat_pair_winner(judgment):
    if "[[A]]" in judgment:
        return "A"
    elif "[[B]]" in judgment:
        return "B"
    elif "[[C]]" in judgment:
        return "tie"
    else:
        return "error"


def single_text(rng):
    r = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 6.5, 8.5])
    return rng.choice([
        f"The answer is helpful and mostly accurate.\n\nRating: [[{r}]]",
        f"[[{r}]]",
        f"The response misses the second part of the question. Rating: [{r}]",
        f"Explanation: it follows the instructions. I rate it [[{r}]] out of 10.",
        "The assistant's answer cannot be rated: it is empty.",
    ])


def pair_text(rng):
    v = rng.choice(["A", "A", "B", "B", "C", None])
    if v is None:
        return "Both assistants answer well; neither is clearly better."
    return rng.choice([
        f"Assistant {v if v != 'C' else 'A and B'} gives the more complete answer.\n\n[[{v}]]",
        f"[[{v}]]",
    ])


def main():
    rng = random.Random(20230622)
    questions = [json.loads(l) for l in open(os.path.join(SHARED, "data", "mt_bench", "question.jsonl"))]
    os.makedirs(OUT, exist_ok=True)
    single, pair = [], []
    for m in MODELS:
        for q in questions:
            for turn in (1, 2):
                prompt = "single-v1" if turn == 1 else "single-v1-multi-turn"
                text = single_text(rng)
                single.append({"question_id": q["question_id"], "model": m, "judge": ["gpt-4", prompt],
                               "user_prompt": f"[Question]\n{q['turns'][turn - 1][:60]}...", "judgment": text,
                               "score": fastchat_single_score(text), "turn": turn, "tstamp": 1687000000.0})
                # FastChat's play_a_match_pair: g1 with model_1 as assistant A, g2 swapped, and
                # both winners named from model_1 / model_2.
                g1, g2 = pair_text(rng), pair_text(rng)
                w1, w2 = fastchat_pair_winner(g1), fastchat_pair_winner(g2)
                g1_winner = {"A": "model_1", "B": "model_2"}.get(w1, w1)
                g2_winner = {"A": "model_2", "B": "model_1"}.get(w2, w2)
                pair.append({"question_id": q["question_id"], "model_1": m, "model_2": BASELINE,
                             "g1_winner": g1_winner, "g2_winner": g2_winner,
                             "judge": ["gpt-4", "pair-v2" if turn == 1 else "pair-v2-multi-turn"],
                             "g1_user_prompt": "...", "g1_judgment": g1, "g2_user_prompt": "...", "g2_judgment": g2,
                             "turn": turn, "tstamp": 1687000000.0})
    for name, rows in [("gpt-4_single.jsonl", single), ("gpt-4_pair.jsonl", pair)]:
        with open(os.path.join(OUT, name), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")

    # FastChat fastchat/llm_judge/show_result.py, display_result_single.
    df_all = pd.read_json(os.path.join(OUT, "gpt-4_single.jsonl"), lines=True)
    df = df_all[["model", "score", "turn"]]
    df = df[df["score"] != -1]
    expected = {"single": {}, "pair": {}}
    for m in MODELS:
        d = df[df["model"] == m]
        expected["single"][m] = {
            "turn_1": float(d[d["turn"] == 1]["score"].mean()),
            "turn_2": float(d[d["turn"] == 2]["score"].mean()),
            "score": float(d["score"].mean()),
            "n": int(len(d)),
            "unparsed": int((df_all[df_all["model"] == m]["score"] == -1).sum()),
        }

    # display_result_pairwise, with --baseline-model gpt-3.5-turbo.
    df_all = pd.read_json(os.path.join(OUT, "gpt-4_pair.jsonl"), lines=True)
    df_all = df_all[(df_all["g1_winner"] != "error") & (df_all["g2_winner"] != "error")]
    list_res = []
    for index, row in df_all.iterrows():
        if BASELINE not in [row["model_1"], row["model_2"]]:
            continue
        if row["g1_winner"] == "tie" or row["g1_winner"] != row["g2_winner"]:
            list_res.append({"model": row["model_1"], "win": 0, "loss": 0, "tie": 1})
            list_res.append({"model": row["model_2"], "win": 0, "loss": 0, "tie": 1})
        else:
            if row["g1_winner"] == "model_1":
                winner = row["model_1"]
                loser = row["model_2"]
            else:
                winner = row["model_2"]
                loser = row["model_1"]
            list_res.append({"model": winner, "win": 1, "loss": 0, "tie": 0})
            list_res.append({"model": loser, "win": 0, "loss": 1, "tie": 0})
    df = pd.DataFrame(list_res)
    df = df.groupby(["model"]).sum()
    df = df[df.index != BASELINE]
    df["win_rate"] = df["win"] / (df["win"] + df["loss"] + df["tie"])
    df["loss_rate"] = df["loss"] / (df["win"] + df["loss"] + df["tie"])
    df["win_rate_adjusted"] = (df["win"] + 0.5 * df["tie"]) / (df["win"] + df["loss"] + df["tie"])
    for m, r in df.iterrows():
        expected["pair"][m] = {k: (int(r[k]) if k in ("win", "loss", "tie") else float(r[k]))
                               for k in ("win", "loss", "tie", "win_rate", "loss_rate", "win_rate_adjusted")}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
