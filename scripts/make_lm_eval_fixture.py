"""lm-evaluation-harness's own numbers for two MMLU subjects on an hf-tiny model, for herd-eval.

Runs lm-eval (`pip install lm-eval torch`) with `--model hf` on ../shared/golden/hf-tiny/llama,
zero-shot, on abstract_algebra and high_school_geography read from ../shared/data/mmlu (lm-eval's
own `mmlu` task downloads cais/mmlu; this writes the same prompt as its template,
`{{question.strip()}}\\nA. …\\nD. …\\nAnswer:` with choices A-D and the subject's description,
as a task over the local CSV files). Keeps every sample's per-choice log-likelihood and
lm-eval's acc / acc_norm in crates/herd-eval/tests/fixtures/mmlu_lm_eval.json.
"""
import json
import os
import tempfile

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lm_eval  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.abspath(os.environ.get("HERD_SHARED", os.path.join(HERE, "..", "..", "shared")))
SUBJECTS = ["abstract_algebra", "high_school_geography"]
MODEL = os.path.join(SHARED, "golden", "hf-tiny", "llama")

YAML = """task: herd_mmlu_{s}
dataset_path: csv
dataset_kwargs:
  data_files:
    test: {test}
    dev: {dev}
  column_names: [question, A, B, C, D, answer]
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
output_type: multiple_choice
description: "The following are multiple choice questions (with answers) about {subject}.\\n\\n"
doc_to_text: "{{{{question.strip()}}}}\\nA. {{{{A}}}}\\nB. {{{{B}}}}\\nC. {{{{C}}}}\\nD. {{{{D}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: "{{{{['A', 'B', 'C', 'D'].index(answer)}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""


def main():
    tmp = tempfile.mkdtemp()
    for s in SUBJECTS:
        with open(os.path.join(tmp, f"{s}.yaml"), "w") as f:
            f.write(YAML.format(s=s, subject=s.replace("_", " "),
                                test=os.path.join(SHARED, "data", "mmlu", "test", f"{s}_test.csv"),
                                dev=os.path.join(SHARED, "data", "mmlu", "dev", f"{s}_dev.csv")))
    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={MODEL},dtype=float32", tasks=[f"herd_mmlu_{s}" for s in SUBJECTS],
        num_fewshot=0, batch_size=1, device="cpu", log_samples=True, task_manager=TaskManager(include_path=tmp))
    out = {"lm_eval": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "?", "model": "hf-tiny/llama",
           "num_fewshot": 0, "subjects": {}}
    for s in SUBJECTS:
        r = res["results"][f"herd_mmlu_{s}"]
        samples = sorted(res["samples"][f"herd_mmlu_{s}"], key=lambda x: x["doc_id"])
        out["subjects"][s] = {
            "acc": r["acc,none"], "acc_norm": r["acc_norm,none"],
            # doc_id is the row's index in the file; herd names items by line.
            "samples": [{"doc_id": x["doc_id"], "loglikelihoods": [float(resp[0][0]) for resp in x["resps"]],
                         "context": x["arguments"][0][0] if isinstance(x["arguments"], list) else x["arguments"]["gen_args_0"]["arg_0"]}
                        for x in samples],
        }
        print(s, r["acc,none"], r["acc_norm,none"], len(samples))
    dst = os.path.join(HERE, "..", "crates", "herd-eval", "tests", "fixtures", "mmlu_lm_eval.json")
    with open(dst, "w") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
