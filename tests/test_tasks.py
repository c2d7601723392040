"""Downstream task loading: files, columns, labels, splits, and a clear error for each bad input."""

import json
from collections import Counter

import pytest

from pretrainlab.data.tasks import load_task
from pretrainlab.errors import TaskError


def write_csv(path, header, rows, sep=","):
    path.write_text("\n".join([sep.join(header)] + [sep.join(map(str, r)) for r in rows]) + "\n", encoding="utf-8")
    return path


def labelled(n=300, shares=(0.5, 0.3, 0.2), names=("a", "b", "c")):
    """n unique texts, label k for a share shares[k] of them."""
    rows, k, bound = [], 0, shares[0] * n
    for i in range(n):
        if i >= bound and k < len(shares) - 1:
            k += 1
            bound += shares[k] * n
        rows.append((f"text number {i}", names[k]))
    return rows


def all_texts(task):
    return [t for s in ("train", "validation", "test") for t in task.split(s).texts]


def test_csv_with_string_labels_keeps_label_maps(tmp_path):
    f = write_csv(tmp_path / "t.csv", ["review", "stars"], labelled(100, (0.5, 0.5), ("neg", "pos")))
    task = load_task(f, text_column="review", label_column="stars")
    assert task.label_names == ["neg", "pos"]
    assert task.id2label == {0: "neg", 1: "pos"} and task.label2id == {"neg": 0, "pos": 1}
    assert not task.has_pairs
    assert sorted(all_texts(task)) == sorted(f"text number {i}" for i in range(100))
    # labels survive the round trip: every example keeps its own
    for s in ("train", "validation", "test"):
        sp = task.split(s)
        for text, y in zip(sp.texts, sp.labels):
            assert task.label_names[y] == ("neg" if int(text.split()[-1]) < 50 else "pos")


def test_jsonl_with_integer_labels_and_pairs(tmp_path):
    f = tmp_path / "t.jsonl"
    lines = [json.dumps({"a": f"first {i}", "b": f"second {i}", "y": i % 3}) for i in range(90)]
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = load_task(f, text_column="a", text_pair_column="b", label_column="y")
    assert task.label_names == [0, 1, 2] and task.id2label == {0: 0, 1: 1, 2: 2}
    assert task.has_pairs
    for s in ("train", "validation", "test"):
        sp = task.split(s)
        for a, b, y in zip(sp.texts, sp.pairs, sp.labels):
            assert a.split()[-1] == b.split()[-1] and int(a.split()[-1]) % 3 == y


def test_integer_labels_in_csv_are_integers_and_tsv_is_read(tmp_path):
    rows = [(f"text, with comma {i}", 10 + i % 2) for i in range(40)]
    f = write_csv(tmp_path / "t.tsv", ["text", "label"], rows, "\t")
    task = load_task(f)
    assert task.label_names == [10, 11]


def test_stratified_split_keeps_class_shares_and_is_seeded(tmp_path):
    f = write_csv(tmp_path / "t.csv", ["text", "label"], labelled(400))
    task = load_task(f, val_fraction=0.1, test_fraction=0.2, seed=3)
    assert task.split_kind == "stratified"
    assert (len(task.train), len(task.validation), len(task.test)) == (280, 40, 80)
    for s in ("train", "validation", "test"):
        counts = Counter(task.split(s).labels)
        n = len(task.split(s))
        for k, share in enumerate((0.5, 0.3, 0.2)):
            assert abs(counts[k] / n - share) < 0.02, (s, k, counts)
    again = load_task(f, val_fraction=0.1, test_fraction=0.2, seed=3)
    other = load_task(f, val_fraction=0.1, test_fraction=0.2, seed=4)
    assert again.test.texts == task.test.texts
    assert other.test.texts != task.test.texts


def test_grouped_split_puts_each_group_in_one_split(tmp_path):
    rows = [(f"sentence {i}", "xy"[i % 2], f"g{i // 6}") for i in range(300)]
    f = write_csv(tmp_path / "t.csv", ["text", "label", "doc"], rows)
    task = load_task(f, group_column="doc")
    assert task.split_kind == "grouped"
    where = {}
    for s in ("train", "validation", "test"):
        for g in task.split(s).groups:
            assert where.setdefault(g, s) == s, f"group {g} is in {where[g]} and {s}"
    assert len(task.test) >= 30 and len(task.validation) >= 30 and len(task.train) >= 180


def test_duplicates_are_dropped_before_splitting(tmp_path):
    rows = [(f"text {i % 50}", "ab"[(i % 50) % 2]) for i in range(200)]  # every text four times
    rows.append(("  text 3 ", "a"))  # the same text up to whitespace, another label
    task = load_task(write_csv(tmp_path / "t.csv", ["text", "label"], rows))
    texts = all_texts(task)
    assert len(texts) == len(set(texts)) == 50
    assert "duplicate" in task.notes[0]


def test_the_files_own_splits_are_used_and_missing_validation_is_drawn(tmp_path):
    rows = [(f"train text {i}", "ab"[i % 2], "train") for i in range(60)]
    rows += [(f"test text {i}", "ab"[i % 2], "test") for i in range(10)]
    rows += [("train text 5", "b", "test")]  # in train and test: the test copy wins
    task = load_task(write_csv(tmp_path / "t.csv", ["text", "label", "split"], rows))
    assert task.split_kind == "file"
    assert len(task.test) == 11 and "train text 5" in task.test.texts
    assert "train text 5" not in task.train.texts + task.validation.texts
    assert len(task.validation) == 6 and len(task.train) == 53
    assert not set(task.validation.texts) & set(task.train.texts)


def test_builtin_task_uses_the_source_file(tmp_path, monkeypatch):
    f = write_csv(tmp_path / "wordnet-pairs.csv", ["text", "text_pair", "label", "group"],
                  [(f"ex {i}", f"def {i}", ["match", "no match"][i % 2], f"s{i // 2}") for i in range(60)])
    import pretrainlab.data.sources as sources

    monkeypatch.setattr(sources, "get_source", lambda name, cache_dir=None: f)
    task = load_task("wordnet-pairs")
    assert task.name == "wordnet-pairs" and task.has_pairs and task.split_kind == "grouped"
    assert task.label_names == ["match", "no match"]


# --------------------------------------------------------------------------- bad input: one clear error each


def test_unknown_label_in_the_test_split(tmp_path):
    rows = [(f"t {i}", "ab"[i % 2], "train") for i in range(20)] + [("odd one", "c", "test")]
    f = write_csv(tmp_path / "t.csv", ["text", "label", "split"], rows)
    with pytest.raises(TaskError, match=r"t\.csv: label 'c' in column 'label' appears in the test split \(line 22\) "
                                        r"but never in train"):
        load_task(f)


def test_label_column_with_one_class(tmp_path):
    f = write_csv(tmp_path / "t.csv", ["text", "label"], [(f"t {i}", "same") for i in range(20)])
    with pytest.raises(TaskError, match=r"t\.csv: column 'label' holds one class \('same'\) in all 20 rows"):
        load_task(f)


def test_empty_text_column(tmp_path):
    f = write_csv(tmp_path / "t.csv", ["text", "label"], [("", "ab"[i % 2]) for i in range(20)])
    with pytest.raises(TaskError, match=r"t\.csv: column 'text' is empty in every row"):
        load_task(f)


def test_empty_texts_are_named_by_line(tmp_path):
    rows = [(f"t {i}" if i not in (3, 7) else "  ", "ab"[i % 2]) for i in range(20)]
    f = write_csv(tmp_path / "t.csv", ["text", "label"], rows)
    with pytest.raises(TaskError, match=r"column 'text' is empty in 2 of 20 rows \(line 5, line 9\)"):
        load_task(f)


def test_missing_column_lists_the_columns_present(tmp_path):
    f = write_csv(tmp_path / "t.csv", ["sentence", "label"], [(f"t {i}", "ab"[i % 2]) for i in range(20)])
    with pytest.raises(TaskError, match=r"t\.csv: no column 'text'.*the columns present are 'sentence', 'label'"):
        load_task(f)


def test_row_with_a_different_number_of_fields(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("text,label\nhello,a\nsplit, unquoted,b\n", encoding="utf-8")
    with pytest.raises(TaskError, match=r"t\.csv: line 3 has 3 fields but the header has 2 \(text, label\)"):
        load_task(f)


def test_jsonl_line_with_other_fields(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text('{"text": "a", "label": 1}\n{"txt": "b", "label": 0}\n', encoding="utf-8")
    with pytest.raises(TaskError, match=r"t\.jsonl: line 2 has fields \['txt', 'label'\].*missing \['text'\]"):
        load_task(f)


def test_unreadable_files(tmp_path):
    with pytest.raises(TaskError, match="neither a file nor a built-in task"):
        load_task(tmp_path / "nope.csv")
    bad = tmp_path / "latin.csv"
    bad.write_bytes(b"text,label\ncaf\xe9,a\n")
    with pytest.raises(TaskError, match=r"latin\.csv: line 2 is not utf-8 \(byte 0xe9\)"):
        load_task(bad)
    with pytest.raises(TaskError, match=r"unknown task file type '\.xlsx'"):
        (tmp_path / "t.xlsx").write_text("x")
        load_task(tmp_path / "t.xlsx")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(TaskError, match=r"dir\.csv: not a readable file"):
        load_task(tmp_path / "dir.csv")
    with pytest.raises(TaskError, match="did you mean 'tweets'"):
        load_task("tweet")



@pytest.mark.parametrize("codec", ["utf-16", "utf-32"])
def test_a_utf16_or_utf32_task_file_with_a_byte_order_mark_is_read(tmp_path, codec):
    """Finding 5, task side: the BOM picks the codec."""
    f = tmp_path / "t.csv"
    f.write_bytes(("text,label\n" + "".join(f"good {i} é,pos\nbad {i},neg\n" for i in range(20))).encode(codec))
    task = load_task(f)
    assert sorted(task.label_names) == ["neg", "pos"] and "good 0 é" in task.train.texts + task.validation.texts + task.test.texts


def test_repeated_csv_header_lines_are_named(tmp_path):
    """Finding 7: concatenated CSVs repeat the header; say where, instead of 'label' becoming a class."""
    part = "text,label\n" + "".join(f"good {i},pos\nbad {i},neg\n" for i in range(10))
    f = tmp_path / "cat.csv"
    f.write_text(part * 3, encoding="utf-8")
    with pytest.raises(TaskError, match=r"cat\.csv: the header line \(text,label\) is repeated at line\(s\) 22, 43 "
                                        r"\(files concatenated .*remove those lines"):
        load_task(f)
