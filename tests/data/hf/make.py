"""How the fixtures beside this file were made, with the real `datasets` package (5.2.0), so that the tests
read what `datasets` itself writes (pretrainlab never imports it):

    pip install datasets==5.2.0 && python tests/data/hf/make.py

reviews/          DatasetDict.save_to_disk: train 40, validation 10, test 10, unsupervised 4 rows (label -1);
                  columns text (string), label (ClassLabel neg/pos), stars (int)
reviews-parquet/  the train and test splits through Dataset.to_parquet, named as on the Hub
"""

import random
import shutil
from pathlib import Path

import datasets

HERE = Path(__file__).parent
WORDS = "the a film movie story plot scene was is very good bad great awful dull fun long short".split()


def split(rng: random.Random, n: int, name: str, labelled: bool = True) -> datasets.Dataset:
    rows = {"text": [], "label": [], "stars": []}
    for i in range(n):
        label = i % 2 if labelled else -1
        rows["text"].append(" ".join(rng.choice(WORDS) for _ in range(8)) + f" {name} {i}")
        rows["label"].append(label)
        rows["stars"].append(1 + 4 * max(label, 0))
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"]),
                                  "stars": datasets.Value("int32")})
    # an explicit fingerprint: datasets 5.2's own (dill over the table) fails under pyarrow 26
    table = datasets.table.InMemoryTable.from_pydict(rows, schema=features.arrow_schema)
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features), fingerprint=f"fixture-{name}")


def main() -> None:
    rng = random.Random(0)
    dd = datasets.DatasetDict({"train": split(rng, 40, "train"), "validation": split(rng, 10, "validation"),
                               "test": split(rng, 10, "test"), "unsupervised": split(rng, 4, "unsup", labelled=False)})
    for d in ("reviews", "reviews-parquet"):
        shutil.rmtree(HERE / d, ignore_errors=True)
    dd.save_to_disk(str(HERE / "reviews"))
    (HERE / "reviews-parquet").mkdir()
    for name in ("train", "test"):
        dd[name].to_parquet(str(HERE / "reviews-parquet" / f"{name}-00000-of-00001.parquet"))


if __name__ == "__main__":
    main()
