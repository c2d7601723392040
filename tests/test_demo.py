"""The demo's task-adaptive corpus: the task's training texts as unlabelled documents."""

from pretrainlab.data.readers import read_documents
from pretrainlab.demo import write_task_text


def test_task_text_becomes_documents_of_its_training_sentences(tmp_path):
    texts = [f"sentence number {i} is\nhere ." for i in range(45)]
    path = write_task_text(texts, tmp_path / "train.txt", per_doc=20)
    docs = list(read_documents([path]))
    assert len(docs) == 3  # 20 + 20 + 5 sentences, blank lines between
    lines = [line for d in docs for line in d.splitlines()]
    assert lines == [" ".join(t.split()) for t in texts]  # every sentence once, in order, on its own line
