"""N-best lists: the candidate sentences a recogniser or translator proposes, read and written in
the formats the tools of speech and MT write them.

Formats (`FORMATS`; `auto` detects them from the first lines, `detect`):

  groups  candidates one per line, groups separated by one blank line; a line may end in
          `<TAB>score`. Groups are numbered from 1.
              the cat sat<TAB>-12.5
              the cat sad<TAB>-12.9
              <blank line>
              next group ...
  tsv     `group_id<TAB>candidate[<TAB>score]`; the lines of a group are consecutive.
  id      `id-N candidate` (Kaldi's `text` of an N-best list, Mikolov's RNNLM toolkit): the group
          is `id`, N the candidate's rank. With `--format id` a first field without `-N` is the
          group id itself (consecutive equal ids form a group).
  kaldi   the id format; NBEST may also be a directory as Kaldi's rescoring scripts leave it:
          `text` (or `words_text`) with `utt-N words`, and optionally `ac_cost` and `lm_cost`
          (`utt-N cost`, costs are -ln p). The acoustic score is -ac_cost.
  srilm   SRILM's N-best lists (nbest-format(5)): `NBestList1.0` then `(score) w1 w2 ...`, or
          `NBestList2.0` then `(score) w1 ( st: .. et: .. g: .. a: .. ) w2 ...` (scores in
          bytelog: log base 1.0001 divided by 1024, converted here to log10), or SRILM's native
          `ascore lscore nwords w1 w2 ...` (log10, no header). SRILM keeps one list per file; here
          a file may hold several, each starting with its header (or, for the native lines,
          separated by a blank line). Groups are numbered from 1.
  moses   `id ||| candidate ||| features ||| total [||| more fields]`.

Every candidate has an optional score: the acoustic (or original decoder) score, as the file
gives it, except SRILM bytelog scores (converted to log10) and Kaldi costs (negated).

Parsing is strict: a malformed line raises FormatError naming the file and the line; invalid
UTF-8 raises InputError with the line and byte. Reading streams one group at a time.
"""
from __future__ import annotations

import io
import itertools
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FormatError, InputError
from ..text.textio import atomic_write, display_name, read_lines

FORMATS = ("groups", "tsv", "id", "kaldi", "srilm", "moses")
SRILM_HEADERS = ("NBestList1.0", "NBestList2.0")
# a bytelog is log base 1.0001 of p, divided by 1024 (nbest-format(5)); SRILM's scripts convert
# with bytelogscale = ln(10) * 10000.5 / 1024 bytelogs per log10 unit
BYTELOG_PER_LOG10 = math.log(10) * 10000.5 / 1024.0
DETECT_LINES = 200
PAUSES = frozenset(("-pau-", "<s>", "</s>"))

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_ID_N = re.compile(r"^(.+)-(\d+)$")
_NATIVE = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+)(?:\s+(.*))?$")
_NATIVE_PROBE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s+"
                           r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s+\d+(?:\s|$)")
_DECIPHER = re.compile(r"^\(\s*(\S+)\s*\)\s*(.*)$")


@dataclass(slots=True)
class Candidate:
    """One candidate sentence. `score` is the acoustic / original score (None when the format or
    the line has none); `words` the length the word penalty counts (SRILM's nwords column, else
    the number of whitespace-separated words)."""

    text: str
    score: float | None = None
    id: str | None = None
    line: int = 0
    nwords: int | None = None
    extra: dict = field(default_factory=dict)  # what the writers need to give the line back

    @property
    def words(self) -> int:
        return len(self.text.split()) if self.nwords is None else self.nwords


@dataclass(slots=True)
class Group:
    """The candidates for one input (an utterance, a source sentence), in file order."""

    id: str
    candidates: list[Candidate]
    format: str
    line: int = 0
    header: str | None = None  # SRILM's NBestList header, when the file had one


def _number(text: str, what: str, where: str) -> float:
    if not _NUMBER.match(text) or not math.isfinite(value := float(text)):
        raise FormatError(f"{where}: malformed {what} {text!r}: expected a finite number")
    return value


def _numberish(text: str) -> bool:
    """Whether a field was meant as a number (nan, inf and 1e999 included): detection decides
    the format on it, and the strict parser then rejects what is not a finite number."""
    try:
        float(text)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------------
# detection
# ------------------------------------------------------------------------------------------------
def detect(lines: list[str]) -> str:
    """The format of an N-best file from its first lines (see the module docstring).

    The first candidate line decides when it is unmistakable (an SRILM header or score columns,
    Moses' `|||`, a tab); the strict parser then holds every later line to that format. A field
    meant as a number decides even when it is not a finite one (`nan`, `1e999`, a word count
    `3.5`): the parser then reports it, instead of reading the file as another format.
    The id-prefixed format needs every line seen to start with `id-N` (a first word such as
    `covid-19` alone is not enough) and no blank line; when two or more lines start with
    `id-N` and another does not, the evidence is contradictory and detection stops with an
    error that asks for --format.
    """
    body = [s for s in lines if s.strip()]
    if not body:
        raise FormatError("the N-best list is empty")
    first = body[0].strip()
    fields = first.split()
    if first in SRILM_HEADERS or _NATIVE_PROBE.match(first) or (
            len(fields) >= 3 and all(_numberish(f) for f in fields[:3]) and "\t" not in body[0]):
        return "srilm"
    if " ||| " in first or first.count("|||") >= 3:
        return "moses"
    if "\t" in body[0]:
        # `candidate<TAB>score` lines are the blank-line format, not TSV
        fields = body[0].split("\t")
        return "groups" if len(fields) == 2 and _numberish(fields[1].strip()) else "tsv"
    inner = lines[next(i for i, s in enumerate(lines) if s.strip()):]
    while inner and not inner[-1].strip():
        inner.pop()
    with_id = [bool(_ID_N.match(s.split(maxsplit=1)[0])) for s in body]
    if all(s.strip() for s in inner) and all(with_id):
        return "id"
    if sum(with_id) >= 2 and all(s.strip() for s in inner):
        bad = with_id.index(False)
        raise FormatError(
            f"cannot tell the N-best format: line {bad + 1} of the list ({body[bad][:40]!r}) "
            f"does not start with `id-N` as the lines before it do; if the file is id-prefixed, "
            f"that line is malformed; if it is one group per blank-line block, pass --format "
            f"groups (or --format id to take a first field without -N as the id)")
    return "groups"


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
class NBestReader:
    """Iterate over the groups of an N-best file (or `-`), one group in memory at a time.

    `format` is one of FORMATS or "auto"; `.format` holds the resolved one once reading starts.
    `progress(n)` is called with the number of bytes read since the last call.
    """

    def __init__(self, path: str | os.PathLike, format: str = "auto", *,
                 progress: Callable[[int], None] | None = None):
        if format != "auto" and format not in FORMATS:
            raise FormatError(f"unknown N-best format {format!r}: use auto or one of "
                              f"{', '.join(FORMATS)}")
        self.path = path
        self.name = display_name(path)
        self.requested = format
        self.format = None if format == "auto" else format
        self.progress = progress
        self.native = False  # SRILM native lines (no header)

    def _lines(self, path) -> Iterator[tuple[int, str]]:
        if self.progress is None:
            yield from read_lines(path)
            return
        done = 0
        for number, text in read_lines(path):
            done += len(text.encode("utf-8")) + 1
            if done >= 1 << 16:
                self.progress(done)
                done = 0
            yield number, text
        if done:
            self.progress(done)

    def __iter__(self) -> Iterator[Group]:
        if str(self.path) != "-" and Path(self.path).is_dir():
            if self.format not in (None, "kaldi"):
                raise InputError(f"{self.name}: is a directory; only --format kaldi reads a "
                                 f"directory (Kaldi's text / words_text, ac_cost, lm_cost)")
            self.format = "kaldi"
            yield from self._kaldi_dir(Path(self.path))
            return
        lines = self._lines(self.path)
        head = list(itertools.islice(lines, DETECT_LINES))
        if self.format is None:
            if not any(s.strip() for _, s in head):
                raise FormatError(f"{self.name}: the N-best list is empty")
            try:
                self.format = detect([s for _, s in head])
            except FormatError as e:
                raise FormatError(f"{self.name}: {e}") from None
        stream = itertools.chain(head, lines)
        parse = {"groups": self._groups, "tsv": self._tsv, "id": self._id, "kaldi": self._id,
                 "srilm": self._srilm, "moses": self._moses}[self.format]
        count = 0
        for group in parse(stream):
            count += 1
            yield group
        if count == 0:
            raise FormatError(f"{self.name}: the N-best list is empty")

    # --- (a) blank-line separated groups ----------------------------------------------------------
    def _groups(self, lines) -> Iterator[Group]:
        where = self.name
        cands: list[Candidate] = []
        empty_at = None  # a blank line that would open an empty group (an error unless at EOF)
        has_score = None
        start = 0
        ordinal = 0
        for number, text in lines:
            if not text.strip():
                if cands:
                    ordinal += 1
                    yield Group(str(ordinal), cands, "groups", start)
                    cands = []
                elif empty_at is None:
                    empty_at = number
                continue
            if empty_at is not None:
                raise FormatError(
                    f"{where}:{empty_at}: a group with no candidates (a blank line "
                    f"{'at the start of the file' if ordinal == 0 else 'after a blank line'}); "
                    f"groups are separated by exactly one blank line")
            if not cands:
                start = number
            body, tab, score = text.rpartition("\t")
            if tab:
                if "\t" in body:
                    raise FormatError(f"{where}:{number}: more than one tab in a line of the "
                                      f"blank-line-separated format (`candidate[<TAB>score]`); "
                                      f"is this a TSV file? pass --format tsv")
                s = _number(score.strip(), "score column", f"{where}:{number}")
            else:
                body, s = text, None
            if has_score is None:
                has_score = s is not None
            elif has_score != (s is not None):
                raise FormatError(f"{where}:{number}: malformed score column: this line "
                                  f"{'lacks' if has_score else 'has'} the `<TAB>score` that "
                                  f"earlier lines {'have' if has_score else 'lack'}")
            cands.append(Candidate(body.strip(), s, None, number))
        if cands:
            yield Group(str(ordinal + 1), cands, "groups", start)

    # --- (b) TSV --------------------------------------------------------------------------------
    def _tsv(self, lines) -> Iterator[Group]:
        where = self.name
        seen: set[str] = set()
        current = None
        cands: list[Candidate] = []
        has_score = None
        start = 0
        for number, text in lines:
            if not text.strip():
                raise FormatError(f"{where}:{number}: blank line in a TSV N-best list (expected "
                                  f"`group_id<TAB>candidate[<TAB>score]`); mixed formats? for "
                                  f"blank-line-separated groups pass --format groups")
            fields = text.split("\t")
            if len(fields) not in (2, 3):
                raise FormatError(f"{where}:{number}: expected 2 or 3 tab-separated fields "
                                  f"(`group_id<TAB>candidate[<TAB>score]`), got {len(fields)}; "
                                  f"mixed formats in one file?")
            gid = fields[0].strip()
            if not gid:
                raise FormatError(f"{where}:{number}: empty group id")
            s = _number(fields[2].strip(), "score column", f"{where}:{number}") \
                if len(fields) == 3 else None
            if has_score is None:
                has_score = s is not None
            elif has_score != (s is not None):
                raise FormatError(f"{where}:{number}: malformed score column: this line "
                                  f"{'lacks' if has_score else 'has'} the third (score) column "
                                  f"that earlier lines {'have' if has_score else 'lack'}")
            if gid != current:
                if cands:
                    yield Group(current, cands, "tsv", start)
                if gid in seen:
                    raise FormatError(f"{where}:{number}: group {gid!r} appears again after "
                                      f"other groups; the lines of a group must be consecutive "
                                      f"(sort the file with `sort -s -t$'\\t' -k1,1`)")
                seen.add(gid)
                current, cands, start = gid, [], number
            cands.append(Candidate(fields[1].strip(), s, gid, number))
        if cands:
            yield Group(current, cands, "tsv", start)

    # --- (c) id-prefixed ------------------------------------------------------------------------
    def _id(self, lines, scores: dict | None = None) -> Iterator[Group]:
        where = self.name
        strict_n = self.requested == "auto"
        seen: set[str] = set()
        current = None
        cands: list[Candidate] = []
        start = 0
        fmt = self.format
        for number, text in lines:
            if not text.strip():
                raise FormatError(f"{where}:{number}: blank line in an id-prefixed N-best list "
                                  f"(expected `id-N candidate`); mixed formats?")
            parts = text.split(maxsplit=1)
            cid = parts[0]
            m = _ID_N.match(cid)
            if m:
                gid = m.group(1)
            elif strict_n:
                raise FormatError(f"{where}:{number}: expected `id-N candidate` (id-prefixed "
                                  f"format, detected from the first lines), got {text[:60]!r}; "
                                  f"mixed formats in one file?")
            else:
                gid = cid
            if gid != current:
                if cands:
                    yield Group(current, cands, fmt, start)
                if gid in seen:
                    raise FormatError(f"{where}:{number}: group {gid!r} appears again after "
                                      f"other groups; the lines of a group must be consecutive")
                seen.add(gid)
                current, cands, start = gid, [], number
            cands.append(Candidate(parts[1].strip() if len(parts) > 1 else "", None, cid, number))
        if cands:
            yield Group(current, cands, fmt, start)

    def _kaldi_dir(self, d: Path) -> Iterator[Group]:
        text = next((d / n for n in ("text", "words_text") if (d / n).is_file()), None)
        if text is None:
            raise InputError(f"{d}: no `text` or `words_text` file (a Kaldi N-best directory "
                             f"holds `utt-N words` lines in one of them)")
        costs = {n: read_lines(d / n) for n in ("ac_cost", "lm_cost") if (d / n).is_file()}
        self.name = str(text)
        for group in self._id(self._lines(text)):
            for c in group.candidates:
                for n, it in costs.items():
                    try:
                        number, line = next(it)
                    except StopIteration:
                        raise FormatError(f"{d / n}: ends before {text}:{c.line} "
                                          f"({c.id}); the files must list the same keys in the "
                                          f"same order") from None
                    parts = line.split()
                    if len(parts) != 2 or parts[0] != c.id:
                        raise FormatError(f"{d / n}:{number}: expected `{c.id} cost` to match "
                                          f"{text}:{c.line}, got {line[:60]!r}")
                    cost = _number(parts[1], "cost", f"{d / n}:{number}")
                    if n == "ac_cost":
                        c.score = -cost  # a cost is -ln p: negate it, so higher is better
                    else:
                        c.extra["lm_cost"] = cost
            yield group

    # --- (d) SRILM ------------------------------------------------------------------------------
    def _srilm(self, lines) -> Iterator[Group]:
        where = self.name
        header = None       # the current list's NBestList header; None: native lines
        header_at = None    # the line of a header not yet followed by a candidate
        empty_at = None     # a blank line that would open an empty native group
        cands: list[Candidate] = []
        ordinal = 0
        start = 0

        def flush():
            nonlocal ordinal
            ordinal += 1
            return Group(str(ordinal), cands, "srilm", start, header)

        for number, text in lines:
            stripped = text.strip()
            if stripped in SRILM_HEADERS:
                if header_at is not None:
                    raise FormatError(f"{where}:{header_at}: a group with no candidates (the "
                                      f"{header} header is followed directly by another header)")
                if cands:
                    yield flush()
                header, header_at, cands, empty_at = stripped, number, [], None
                continue
            if not stripped:
                if header is None:  # native lists are separated by one blank line
                    if cands:
                        yield flush()
                        cands = []
                    elif empty_at is None:
                        empty_at = number
                continue  # a blank line inside a Decipher list is skipped, as SRILM does
            if empty_at is not None:
                raise FormatError(f"{where}:{empty_at}: a group with no candidates (a blank line "
                                  f"{'at the start of the file' if ordinal == 0 else 'after a blank line'})")
            if not cands:
                start = header_at if header_at is not None else number
            header_at = None
            cands.append(self._native(text, number) if header is None
                         else self._decipher(text, number, header))
        if header_at is not None:
            raise FormatError(f"{where}:{header_at}: a group with no candidates (the {header} "
                              f"header ends the file)")
        if cands:
            yield flush()

    def _native(self, text: str, number: int) -> Candidate:
        where = f"{self.name}:{number}"
        m = _NATIVE.match(text)
        if not m:
            raise FormatError(f"{where}: expected SRILM's `ascore lscore nwords words...`, got "
                              f"{text[:60]!r}; mixed formats in one file?")
        ascore = _number(m.group(1), "acoustic score (first column)", where)
        lscore = _number(m.group(2), "LM score (second column)", where)
        if not m.group(3).isdigit():
            raise FormatError(f"{where}: malformed word count (third column) {m.group(3)!r}: "
                              f"expected a non-negative integer")
        return Candidate((m.group(4) or "").strip(), ascore, None, number, int(m.group(3)),
                         {"lscore": lscore})

    def _decipher(self, text: str, number: int, header: str) -> Candidate:
        where = f"{self.name}:{number}"
        m = _DECIPHER.match(text.strip())
        if not m:
            raise FormatError(f"{where}: expected `(score) w1 w2 ...` after the {header} "
                              f"header, got {text[:60]!r}; mixed formats in one file?")
        score = _number(m.group(1), "bytelog score", where) / BYTELOG_PER_LOG10
        rest = m.group(2)
        if header == "NBestList1.0":
            words = [w for w in rest.split() if w not in PAUSES]
        else:
            words = _decipher2_words(rest, where)
        return Candidate(" ".join(words), score, None, number, None, {"raw": text})

    # --- (e) Moses ------------------------------------------------------------------------------
    def _moses(self, lines) -> Iterator[Group]:
        where = self.name
        seen: set[str] = set()
        current = None
        cands: list[Candidate] = []
        start = 0
        for number, text in lines:
            fields = text.split("|||")
            if len(fields) < 4:
                raise FormatError(f"{where}:{number}: expected Moses' `id ||| candidate ||| "
                                  f"features ||| score`, got {text[:60]!r}; mixed formats in "
                                  f"one file?")
            gid = fields[0].strip()
            if not gid:
                raise FormatError(f"{where}:{number}: empty sentence id in the first field")
            score = _number(fields[3].strip(), "score (fourth field)", f"{where}:{number}")
            if gid != current:
                if cands:
                    yield Group(current, cands, "moses", start)
                if gid in seen:
                    raise FormatError(f"{where}:{number}: sentence id {gid!r} appears again "
                                      f"after other ids; the lines of a sentence must be "
                                      f"consecutive")
                seen.add(gid)
                current, cands, start = gid, [], number
            cands.append(Candidate(fields[1].strip(), score, gid, number, None,
                                   {"features": fields[2].strip(),
                                    "more": [f.strip() for f in fields[4:]]}))
        if cands:
            yield Group(current, cands, "moses", start)


def _decipher2_words(rest: str, where: str) -> list[str]:
    """The words of an NBestList2.0 hypothesis: `w1 ( st: s et: e g: g a: a ) w2 ( ... ) ...`.

    Sub-word units (phones, states) follow their word with time marks inside the word's span
    (nbest-format(5)); they are dropped, as are pauses.
    """
    tokens = rest.split()
    words: list[str] = []
    span = None  # (start, end) of the last word
    i = 0
    while i < len(tokens):
        unit = tokens[i]
        info = {}
        if i + 1 < len(tokens) and tokens[i + 1] == "(":
            try:
                close = tokens.index(")", i + 2)
            except ValueError:
                raise FormatError(f"{where}: unclosed `(` after {unit!r} in an NBestList2.0 "
                                  f"hypothesis") from None
            inner = tokens[i + 2:close]
            for k in range(0, len(inner) - 1, 2):
                info[inner[k]] = inner[k + 1]
            i = close + 1
        else:
            i += 1
        st, et = info.get("st:"), info.get("et:")
        try:
            st = float(st) if st is not None else None
            et = float(et) if et is not None else None
        except ValueError:
            raise FormatError(f"{where}: malformed time mark in the word information of "
                              f"{unit!r}") from None
        if span is not None and st is not None and et is not None \
                and span[0] <= st and et <= span[1] and (st, et) != span:
            continue  # a sub-word unit inside the last word's span
        if st is not None and et is not None:
            span = (st, et)
        if unit not in PAUSES:
            words.append(unit)
    return words


def parse_text(text: str, format: str = "auto", name: str = "<text>") -> list[Group]:
    """All groups of an N-best list given as a string (for tests and small inputs)."""
    with tempfile.NamedTemporaryFile("w", suffix=".nbest", encoding="utf-8", delete=False) as f:
        f.write(text)
        tmp = f.name
    try:
        reader = NBestReader(tmp, format)
        reader.name = name
        return list(reader)
    finally:
        os.unlink(tmp)


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------
def _num(x: float) -> str:
    return f"{x:.6g}" if abs(x) < 1e6 else f"{x:.10g}"


def candidate_line(group: Group, cand: Candidate, *, lm: float | None = None,
                   total: float | None = None) -> str:
    """One candidate as a line of its group's format (without the newline).

    With `lm` (rnnkit's LM log10) and `total` (the combined score) the line carries them where
    the format has a place: SRILM's native lscore column, and for Moses an `rnnkit=` feature and
    the total. Otherwise the line is the one the input had.
    """
    fmt = group.format
    if fmt == "groups":
        return cand.text if cand.score is None else f"{cand.text}\t{_num(cand.score)}"
    if fmt == "tsv":
        base = f"{group.id}\t{cand.text}"
        return base if cand.score is None else f"{base}\t{_num(cand.score)}"
    if fmt in ("id", "kaldi"):
        return f"{cand.id} {cand.text}".rstrip()
    if fmt == "srilm":
        if "raw" in cand.extra:
            return cand.extra["raw"]
        lscore = cand.extra.get("lscore", 0.0) if lm is None else lm
        return f"{_num(cand.score)} {_num(lscore)} {cand.words} {cand.text}".rstrip()
    if fmt == "moses":
        features = cand.extra.get("features", "")
        score = cand.score
        if lm is not None:
            features = f"{features} rnnkit= {lm:.4f}".strip()
        if total is not None:
            score = total
        fields = [group.id, cand.text, features, _num(score)] + cand.extra.get("more", [])
        return " ||| ".join(fields)
    raise FormatError(f"unknown N-best format {fmt!r}")


def write_group(f, group: Group, first: bool = False) -> None:
    """Write a whole group back in its format (the inverse of reading it)."""
    if group.format == "groups" and not first:
        f.write("\n")
    if group.format == "srilm":
        if group.header:
            f.write(group.header + "\n")
        elif not first:
            f.write("\n")
    for c in group.candidates:
        f.write(candidate_line(group, c) + "\n")


def best_line(group: Group, cand: Candidate, *, lm: float | None = None,
              total: float | None = None) -> str:
    """The line `--best-only` prints for a group's winner: `group_id<TAB>candidate` for the
    TSV and id-prefixed formats, the candidate for blank-line-separated groups, and the input's
    own line format (with rnnkit's scores where it has a place) for SRILM and Moses."""
    if group.format in ("tsv", "id", "kaldi"):
        return f"{group.id}\t{cand.text}"
    if group.format == "groups":
        return cand.text
    return candidate_line(group, cand, lm=lm, total=total)


def write_nbest(path_or_file, groups: Iterable[Group]) -> None:
    """Write groups to a file object (or a path, atomically)."""
    if isinstance(path_or_file, (str, os.PathLike)):
        with atomic_write(path_or_file) as f:
            write_nbest(f, groups)
        return
    for i, g in enumerate(groups):
        write_group(path_or_file, g, first=i == 0)


def groups_to_text(groups: Iterable[Group]) -> str:
    buf = io.StringIO()
    write_nbest(buf, groups)
    return buf.getvalue()


def write_kaldi_dir(path: str | os.PathLike, groups: Iterable[Group]) -> None:
    """Write groups as a Kaldi N-best directory: `text`, and `ac_cost` / `lm_cost` when the
    candidates have them (each file written atomically)."""
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    groups = list(groups)
    cands = [(g, c) for g in groups for c in g.candidates]
    with atomic_write(d / "text") as f:
        for g, c in cands:
            f.write(candidate_line(g, c) + "\n")
    if cands and all(c.score is not None for _, c in cands):
        with atomic_write(d / "ac_cost") as f:
            for _, c in cands:
                f.write(f"{c.id} {_num(-c.score)}\n")
    if cands and all("lm_cost" in c.extra for _, c in cands):
        with atomic_write(d / "lm_cost") as f:
            for _, c in cands:
                f.write(f"{c.id} {_num(c.extra['lm_cost'])}\n")
