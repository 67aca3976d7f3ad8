"""Label selectors, parsed the way ``k8s.io/apimachinery/pkg/labels`` parses them.

A tokenizer (identifiers, ``=``, ``==``, ``!=``, ``!``, ``(``, ``)``, ``,``, ``in``, ``notin``,
``<``, ``>``) and a parser that wants ``,`` or the end after each requirement, so ``a=b c`` and
``a===b`` are refused (400 BadRequest on a list) instead of half-read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SPECIAL = ("!=", "==", "=", "!", "(", ")", ",", "<", ">")


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists", "gt", "lt"
    values: tuple[str, ...]

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return has and value == self.values[0]
        if self.op == "!=":
            return not has or value != self.values[0]
        if self.op == "in":
            return has and value in self.values
        if self.op == "notin":
            return not has or value not in self.values
        if self.op == "exists":
            return has
        if self.op in ("gt", "lt"):
            try:
                n, want = int(value or ""), int(self.values[0])
            except ValueError:
                return False
            return n > want if self.op == "gt" else n < want
        return not has


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        sym = next((s for s in _SPECIAL if text.startswith(s, i)), None)
        if sym is not None:
            out.append(("sym", sym))
            i += len(sym)
            continue
        j = i
        while j < len(text) and not text[j].isspace() and text[j] not in "=!(),<>":
            j += 1
        word = text[i:j]
        out.append(("kw" if word in ("in", "notin") else "id", word))
        i = j
    out.append(("end", ""))
    return out


def label_key_errors(key: str) -> list[str]:
    """Why ``key`` is not a qualified name (empty when it is one)."""
    prefix, slash, name = key.rpartition("/")
    errs = []
    if slash and not prefix:
        errs.append("prefix part must be non-empty")
    if prefix and len(prefix) > 253:
        errs.append("prefix part must be no more than 253 characters")
    elif prefix and not _DNS1123_SUBDOMAIN.match(prefix):
        errs.append("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters")
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    elif not _LABEL_NAME.match(name):
        errs.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character"
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE.match(value):
        errs.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        )
    return errs


def parse_selector(text: str) -> list[Requirement]:
    """``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``, ``a>1``; SelectorError if not."""
    toks = _tokens(text)
    pos = 0
    reqs: list[Requirement] = []

    def peek() -> tuple[str, str]:
        return toks[pos]

    def take() -> tuple[str, str]:
        nonlocal pos
        tok = toks[pos]
        pos += 1
        return tok

    if peek()[0] == "end":
        return []
    while True:
        negate = False
        if peek() == ("sym", "!"):
            take()
            negate = True
        kind, key = take()
        if kind != "id":
            raise SelectorError(f"found '{key}', expected: identifier")
        errs = label_key_errors(key)
        if errs:
            raise SelectorError(f'unable to parse requirement: invalid label key "{key}": {"; ".join(errs)}')
        kind, op = peek()
        if negate or kind == "end" or (kind, op) == ("sym", ","):
            reqs.append(Requirement(key, "!exists" if negate else "exists", ()))
        elif kind == "kw":
            take()
            if take() != ("sym", "("):
                raise SelectorError("found '" + toks[pos - 1][1] + "', expected: '('")
            values: list[str] = []
            while True:
                k, v = take()
                if (k, v) == ("sym", ")") and not values:
                    break
                if k != "id":
                    raise SelectorError(f"found '{v}', expected: ',', ')' or identifier")
                values.append(v)
                k, v = take()
                if (k, v) == ("sym", ")"):
                    break
                if (k, v) != ("sym", ","):
                    raise SelectorError(f"found '{v}', expected: ',' or ')'")
            if not values:
                raise SelectorError(f"for '{op}', '!=', '==' or '=' operators, values set can't be empty")
            reqs.append(Requirement(key, op, tuple(values)))
        elif kind == "sym" and op in ("=", "==", "!=", "<", ">"):
            take()
            k, v = peek()
            if k == "id":
                take()
            elif k == "end" or (k, v) == ("sym", ","):
                v = ""
            else:
                raise SelectorError(f"found '{v}', expected: identifier")
            if op in ("<", ">"):
                if not re.fullmatch(r"-?\d+", v):
                    raise SelectorError(f"for 'Gt', 'Lt' operators, the value must be an integer: {v!r}")
                reqs.append(Requirement(key, "gt" if op == ">" else "lt", (v,)))
            else:
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (v,)))
        else:
            raise SelectorError(f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")
        for r in reqs[-1:]:
            for v in r.values:
                if r.op not in ("gt", "lt") and label_value_errors(v):
                    raise SelectorError(
                        f'unable to parse requirement: invalid label value: "{v}": {"; ".join(label_value_errors(v))}'
                    )
        k, v = take()
        if k == "end":
            return reqs
        if (k, v) != ("sym", ","):
            raise SelectorError(f"found '{v}', expected: ',' or 'end of string'")
