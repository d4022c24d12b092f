"""Elo and Bradley-Terry ratings of the 2023 Vicuna review battles, computed independently of herd.

Battles: every question of every review file in ../shared/data/vicuna_eval_2023/review, with the
score pair the file records (`score`, not the text herd parses); assistant 2 is model_a and
assistant 1 model_b, models named by the `model_id` of their answers; files in the order herd
stores their runs (by run id `import:<folder>/<file stem>:<model>`), rows in file order.

- online Elo: FastChat's compute_elo (K=4, SCALE=400, BASE=10, INIT=1000), verbatim in numpy-free
  Python;
- Bradley-Terry: Chatbot Arena's compute_mle_elo (scikit-learn's unpenalised LogisticRegression
  on the doubled win / tie table) when scikit-learn is installed, and Hunter's MM algorithm in
  numpy as a second, independent solver.

Writes crates/herd-eval/tests/fixtures/vicuna_ratings.json.
Run from the repository root: pip install numpy scikit-learn; python scripts/make_ratings_fixture.py
"""
import glob
import json
import math
import os
from collections import defaultdict

import numpy as np

SHARED = os.environ.get("HERD_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
ROOT = os.path.join(SHARED, "data", "vicuna_eval_2023")


def battles():
    model_of = {}
    for f in glob.glob(os.path.join(ROOT, "answer", "*.jsonl")):
        for line in open(f):
            d = json.loads(line)
            model_of[d["answer_id"]] = d["model_id"]
    runs = []
    for f in glob.glob(os.path.join(ROOT, "review", "*", "*.jsonl")):
        rows = [json.loads(l) for l in open(f)]
        m2 = model_of[rows[0]["answer2_id"]]
        parent = os.path.basename(os.path.dirname(f))
        stem = os.path.splitext(os.path.basename(f))[0]
        runs.append((f"import:{parent}/{stem}:{m2}", rows))
    out = []
    for _, rows in sorted(runs):
        for d in rows:
            s1, s2 = d["score"]
            a, b = model_of[d["answer2_id"]], model_of[d["answer1_id"]]
            w = "model_a" if s2 > s1 else "model_b" if s1 > s2 else "tie"
            out.append((a, b, w))
    return out


def compute_elo(battles, K=4, SCALE=400, BASE=10, INIT_RATING=1000):
    rating = defaultdict(lambda: INIT_RATING)
    for model_a, model_b, winner in battles:
        ra, rb = rating[model_a], rating[model_b]
        ea = 1 / (1 + BASE ** ((rb - ra) / SCALE))
        eb = 1 / (1 + BASE ** ((ra - rb) / SCALE))
        sa = {"model_a": 1, "model_b": 0, "tie": 0.5}[winner]
        rating[model_a] += K * (sa - ea)
        rating[model_b] += K * (1 - sa - eb)
    return dict(rating)


def win_table(battles):
    models = sorted({m for a, b, _ in battles for m in (a, b)})
    idx = {m: i for i, m in enumerate(models)}
    w = np.zeros((len(models), len(models)))
    for a, b, win in battles:
        i, j = idx[a], idx[b]
        if win == "model_a":
            w[i, j] += 2
        elif win == "model_b":
            w[j, i] += 2
        else:
            w[i, j] += 1
            w[j, i] += 1
    return models, w


def bt_sklearn(battles, SCALE=400, BASE=10, INIT_RATING=1000):
    from sklearn.linear_model import LogisticRegression

    models, w = win_table(battles)
    p = len(models)
    X, Y, sw = [], [], []
    for i in range(p):
        for j in range(p):
            if i == j or (w[i, j] == 0 and w[j, i] == 0):
                continue
            x = np.zeros(p)
            x[i], x[j] = math.log(BASE), -math.log(BASE)
            X += [x, x]
            Y += [1.0, 0.0]
            sw += [w[i, j], w[j, i]]
    lr = LogisticRegression(fit_intercept=False, penalty=None, tol=1e-10, max_iter=10000)
    lr.fit(np.array(X), np.array(Y), sample_weight=np.array(sw))
    return dict(zip(models, SCALE * lr.coef_[0] + INIT_RATING))


def bt_mm(battles, SCALE=400, INIT_RATING=1000, iters=100000):
    models, w = win_table(battles)
    n = w + w.T
    wins = w.sum(1)
    p = np.ones(len(models))
    for _ in range(iters):
        new = wins / (n / (p[:, None] + p[None, :])).sum(1)
        new /= np.exp(np.log(new).mean())
        if np.abs(new - p).max() < 1e-15:
            p = new
            break
        p = new
    r = SCALE * np.log10(p)
    return dict(zip(models, r - r.mean() + INIT_RATING))


def main():
    b = battles()
    out = {"note": "see scripts/make_ratings_fixture.py", "battles": len(b),
           "first_battles": b[:5], "elo": compute_elo(b), "bradley_terry_mm": bt_mm(b)}
    try:
        out["bradley_terry_sklearn"] = bt_sklearn(b)
    except ImportError:
        pass
    dst = os.path.join(os.path.dirname(__file__), "..", "crates", "herd-eval", "tests", "fixtures", "vicuna_ratings.json")
    with open(dst, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
