"""mini-CORE: few-shot tasks generated deterministically from the held-out works, and their scoring.

A miniature of the CORE metric (DCLM; the base-model score nanochat reports). Every task is built
from the held-out text alone with a fixed seed, so the same data always gives the same items. Three
kinds, as in CORE:

* multiple choice (``mc``): one context, several continuations; the model picks the continuation
  with the highest mean log-likelihood per byte.
* schema (``schema``): several contexts, one continuation; the model picks the context under which
  the continuation is most likely (Winograd-style partial scoring).
* language modelling (``lm``): one context, one target; correct when greedy decoding reproduces the
  target exactly (checked with teacher forcing: the argmax at every target position is right).

Each item is preceded by ``k`` solved examples (its few-shot prefix); a task has a few fixed demo
sets, assigned to items round-robin, so the evaluator can encode each prefix once. Gold positions
are shuffled; ties between option scores are broken at random with a per-item seed. A task's
accuracy is centered, (acc - random) / (1 - random), and mini-CORE is the mean over tasks.

This module is pure Python (no torch): scoring goes through a ``scorer`` callable, so the metric can
be checked with any scorer (a uniform-random one scores about 0).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SEED = 20260512
N_ITEMS = 500  # scored items per task
N_DEMO_SETS = 4
SEP = "\n\n"  # between few-shot examples and before the item
MAX_TOKENS = 256  # few-shot prefix + head + longest branch, in bytes (= tokens)
DEMO_MAX = 90  # bytes of one solved few-shot example
TIE_EPS = 1e-6  # nats per byte: closer option scores count as a tie


@dataclass(frozen=True)
class Item:
    """One scored question, reduced to byte strings.

    ``head`` is shared by every option; each option is a ``branch`` of which the first ``skip``
    bytes are context (not scored). mc: head = context, branches = options (skip 0). schema: head =
    "", branches = context_i + continuation (skip = len(context_i)). lm: head = context, one branch
    = the target (skip 0). ``gold`` indexes the right branch; ``demo`` the few-shot prefix used."""

    head: str
    branches: tuple[str, ...]
    skips: tuple[int, ...]
    gold: int
    demo: int = 0

    def solved(self) -> str:
        """The item written out with its right answer, as a few-shot example."""
        return self.head + self.branches[self.gold]


@dataclass
class Task:
    name: str
    kind: str  # mc | schema | lm
    k: int  # few-shot examples per item
    description: str
    items: list[Item] = field(default_factory=list)
    demos: list[str] = field(default_factory=list)  # the few-shot prefixes, each ends with SEP

    @property
    def random_baseline(self) -> float:
        if self.kind == "lm":
            return 0.0
        return 1.0 / len(self.items[0].branches)


# ----------------------------------------------------------------------------------------------
# parsing the held-out plays

WORD_RE = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
TAG_RE = re.compile(r"^[A-Z][A-Za-z' ]{0,30}\.$")


@dataclass(frozen=True)
class Speech:
    work: str
    tag: str  # e.g. "Ham." or "FIRST WITCH."
    lines: tuple[str, ...]


def parse_speeches(work: str, text: str) -> list[Speech]:
    """Blank-line separated blocks whose first line is a speaker tag; stage directions removed."""
    text = re.sub(r"\[[^\]]*\]", "", text)
    speeches = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in block.split("\n") if ln.strip()]
        if len(lines) < 2 or not TAG_RE.match(lines[0]) or lines[0].upper().startswith(("ACT ", "SCENE")):
            continue
        body = tuple(ln for ln in lines[1:] if ln.isascii())
        if body:
            speeches.append(Speech(work, lines[0], body))
    return speeches


def load_heldout(heldout: Path) -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8", errors="replace") for p in sorted(Path(heldout).glob("*.txt"))}


class Corpus:
    def __init__(self, texts: dict[str, str]):
        self.speeches = [s for work in sorted(texts) for s in parse_speeches(work, texts[work])]
        self.lines = [(si, li) for si, s in enumerate(self.speeches) for li in range(len(s.lines))]
        self.lines_by_work: dict[str, list[tuple[int, int]]] = {}
        for ref in self.lines:
            self.lines_by_work.setdefault(self.speeches[ref[0]].work, []).append(ref)
        counts = Counter(w.lower() for s in self.speeches for ln in s.lines for w in WORD_RE.findall(ln))
        self.vocab = set(counts)
        self.frequent = [w for w, _ in counts.most_common(200) if len(w) >= 2]
        self.common = {w for w, _ in counts.most_common(80)}

    def line(self, ref: tuple[int, int]) -> str:
        return self.speeches[ref[0]].lines[ref[1]]


def _words(line: str) -> list[re.Match]:
    return list(WORD_RE.finditer(line))


# ----------------------------------------------------------------------------------------------
# item builders: each returns a candidate (head, branches, skips, gold=0) or None


def _shuffle(rng: random.Random, head: str, branches: list[str], skips: list[int]) -> Item:
    order = list(range(len(branches)))
    rng.shuffle(order)
    return Item(head, tuple(branches[i] for i in order), tuple(skips[i] for i in order), order.index(0))


def _corrupt(rng: random.Random, word: str, vocab: set[str]) -> str | None:
    """A same-length misspelling of ``word`` that is not itself a word of the corpus."""
    for _ in range(20):
        w = list(word)
        i = rng.randrange(1, len(w) - 1)
        if rng.random() < 0.5 and w[i] != w[i + 1]:
            w[i], w[i + 1] = w[i + 1], w[i]
        else:
            w[i] = rng.choice([c for c in "abcdefghilmnoprstuwy" if c != w[i]])
        out = "".join(w)
        if out != word and out.lower() not in vocab:
            return out
    return None


def build_spelling(c: Corpus, rng: random.Random) -> Item | None:
    line = c.line(rng.choice(c.lines))
    cands = [m for m in _words(line) if 5 <= len(m.group()) <= 10 and m.group().islower() and m.start() >= 8]
    if not cands:
        return None
    m = rng.choice(cands)
    word = m.group()
    wrong: list[str] = []
    while len(wrong) < 3:
        w = _corrupt(rng, word, c.vocab)
        if w is None:
            return None
        if w not in wrong:
            wrong.append(w)
    tail = line[m.end():m.end() + 1]
    return _shuffle(rng, line[:m.start()], [word + tail] + [w + tail for w in wrong], [0] * 4)


def build_word_order(c: Corpus, rng: random.Random) -> Item | None:
    si, li = rng.choice(c.lines)
    line = c.line((si, li))
    tokens = line.split(" ")
    if not 5 <= len(tokens) <= 9 or len(line) > 50:
        return None
    options = {line}
    for _ in range(30):
        t = tokens[:]
        i, j = rng.sample(range(len(t)), 2)
        t[i], t[j] = t[j], t[i]
        options.add(" ".join(t))
        if len(options) == 4:
            break
    if len(options) < 4:
        return None
    wrong = sorted(options - {line})
    return _shuffle(rng, c.speeches[si].tag + "\n", [line + "\n"] + [w + "\n" for w in wrong], [0] * 4)


def build_next_line(c: Corpus, rng: random.Random) -> Item | None:
    si, li = rng.choice(c.lines)
    s = c.speeches[si]
    if li + 1 >= len(s.lines):
        return None
    first, nxt = s.lines[li], s.lines[li + 1]
    if not (15 <= len(first) <= 50 and 15 <= len(nxt) <= 45):
        return None
    same_work = c.lines_by_work[s.work]
    wrong: list[str] = []
    for _ in range(200):
        cand = c.line(rng.choice(same_work))
        if cand not in wrong and cand != nxt and cand != first and abs(len(cand) - len(nxt)) <= 0.3 * len(nxt):
            wrong.append(cand)
            if len(wrong) == 3:
                break
    if len(wrong) < 3:
        return None
    return _shuffle(rng, first + "\n", [nxt + "\n"] + [w + "\n" for w in wrong], [0] * 4)


def build_word_context(c: Corpus, rng: random.Random) -> Item | None:
    line = c.line(rng.choice(c.lines))
    ws = _words(line)
    if len(ws) < 5 or len(line) > 60:
        return None
    i = rng.randrange(2, len(ws) - 2)
    m = ws[i]
    word = m.group()
    other = rng.choice(c.frequent)
    if other == word.lower():
        return None
    if word[0].isupper():
        other = other.capitalize()
    cont = line[m.end():] + "\n"
    good, bad = line[:m.end()], line[:m.start()] + other
    return _shuffle(rng, "", [good + cont, bad + cont], [len(good), len(bad)])


def build_prev_line(c: Corpus, rng: random.Random) -> Item | None:
    si, li = rng.choice(c.lines)
    s = c.speeches[si]
    if li + 1 >= len(s.lines):
        return None
    prev, line = s.lines[li], s.lines[li + 1]
    if len(prev) > 55 or len(line) > 55:
        return None
    for _ in range(50):
        other = c.line(rng.choice(c.lines))
        if other not in (prev, line) and abs(len(other) - len(prev)) <= 0.3 * len(prev) + 5:
            break
    else:
        return None
    return _shuffle(rng, "", [prev + "\n" + line + "\n", other + "\n" + line + "\n"],
                    [len(prev) + 1, len(other) + 1])


def build_word_completion(c: Corpus, rng: random.Random) -> Item | None:
    line = c.line(rng.choice(c.lines))
    cands = [m for m in _words(line) if len(m.group()) >= 5 and m.start() >= 8 and m.group().isalpha()]
    if not cands or len(line) > 60:
        return None
    m = rng.choice(cands)
    given = (len(m.group()) + 1) // 2
    return Item(line[:m.start() + given], (m.group()[given:],), (0,), 0)


def build_next_word(c: Corpus, rng: random.Random) -> Item | None:
    line = c.line(rng.choice(c.lines))
    cands = [m for m in _words(line) if m.group() in c.common and m.start() >= 10]
    if not cands or len(line) > 60:
        return None
    m = rng.choice(cands)
    return Item(line[:m.start()], (line[m.start():m.end() + 1],), (0,), 0)


BUILDERS: dict[str, tuple[str, int, Callable[[Corpus, random.Random], Item | None], str]] = {
    "spelling": ("mc", 2, build_spelling, "the right spelling of a word among three same-length misspellings"),
    "word_order": ("mc", 2, build_word_order, "the real line among three with two words swapped"),
    "next_line": ("mc", 2, build_next_line, "the real next line among three lines from the same play"),
    "word_context": ("schema", 2, build_word_context,
                     "which of two contexts (the real word, or a frequent word in its place) fits the rest of the line"),
    "prev_line": ("schema", 2, build_prev_line,
                  "which of two previous lines (the real one, or one from elsewhere) leads into a line"),
    "word_completion": ("lm", 2, build_word_completion, "complete a word from its first half, greedily"),
    "next_word": ("lm", 2, build_next_word,
                  "the next word (one of the 80 most frequent) and the character after it, greedily"),
}


def _fits(item: Item, demo: str) -> bool:
    return len(demo) + len(item.head) + max(len(b) for b in item.branches) <= MAX_TOKENS


def build_task(name: str, corpus: Corpus, seed: int = SEED, n_items: int = N_ITEMS) -> Task:
    kind, k, builder, desc = BUILDERS[name]
    rng = random.Random(f"{seed}:{name}")
    task = Task(name, kind, k, desc)
    seen: set[str] = set()
    demo_items: list[Item] = []
    for _ in range(200 * (n_items + N_DEMO_SETS * k)):
        item = builder(corpus, rng)
        if item is None:
            continue
        key = item.solved()  # one question per solved text: no item repeats another or a demo
        if key in seen:
            continue
        seen.add(key)
        if len(demo_items) < N_DEMO_SETS * k:  # the first short items become the solved examples
            if len(item.solved()) <= DEMO_MAX:
                demo_items.append(item)
                if len(demo_items) == N_DEMO_SETS * k:
                    task.demos = ["".join(d.solved() + SEP for d in demo_items[j * k:(j + 1) * k])
                                  for j in range(N_DEMO_SETS)]
            continue
        j = len(task.items) % N_DEMO_SETS
        if _fits(item, task.demos[j]):
            task.items.append(Item(item.head, item.branches, item.skips, item.gold, j))
            if len(task.items) == n_items:
                return task
    raise ValueError(f"mini-CORE task {name}: only {len(task.items)} distinct items from the held-out text")


def build_tasks(texts: dict[str, str], seed: int = SEED, n_items: int = N_ITEMS) -> list[Task]:
    """All mini-CORE tasks from the held-out works (work name -> text)."""
    corpus = Corpus(texts)
    return [build_task(name, corpus, seed, n_items) for name in BUILDERS]


# ----------------------------------------------------------------------------------------------
# scoring

# A request is (few-shot prefix, head, branches, skips); the scorer returns, per branch, the summed
# log-likelihood of its scored bytes, their count, and whether greedy decoding reproduces them.
Request = tuple[str, str, tuple[str, ...], tuple[int, ...]]
BranchScore = tuple[float, int, bool]
Scorer = Callable[[Sequence[Request]], list[list[BranchScore]]]


def requests_of(task: Task) -> list[Request]:
    return [(task.demos[it.demo], it.head, it.branches, it.skips) for it in task.items]


def pick(scores: Sequence[float], rng: random.Random) -> int:
    """Index of the best score; ties (within TIE_EPS) are broken at random by ``rng``."""
    best = max(scores)
    tied = [i for i, s in enumerate(scores) if s >= best - TIE_EPS]
    return tied[0] if len(tied) == 1 else rng.choice(tied)


def task_accuracy(task: Task, results: list[list[BranchScore]], seed: int = SEED) -> float:
    correct = 0
    for i, (item, res) in enumerate(zip(task.items, results, strict=True)):
        if task.kind == "lm":
            correct += bool(res[0][2])
            continue
        rng = random.Random(f"{seed}:{task.name}:tie:{i}")
        means = [lp / max(1, n) for lp, n, _ in res]  # length-normalised log-likelihood
        correct += pick(means, rng) == item.gold
    return correct / len(task.items)


def centered(acc: float, random_baseline: float) -> float:
    return (acc - random_baseline) / (1.0 - random_baseline)


def evaluate_core(tasks: list[Task], scorer: Scorer, seed: int = SEED) -> dict:
    """{"core": mean centered accuracy, "tasks": {name: {accuracy, centered, kind, random}}}."""
    out = {}
    for task in tasks:
        acc = task_accuracy(task, scorer(requests_of(task)), seed)
        out[task.name] = {"kind": task.kind, "accuracy": acc, "random": task.random_baseline,
                          "centered": centered(acc, task.random_baseline), "items": len(task.items)}
    core = sum(t["centered"] for t in out.values()) / len(out)
    return {"core": core, "tasks": out}
