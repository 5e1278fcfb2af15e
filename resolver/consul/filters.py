"""The one filter grammar Dapr's consul resolver sends, parsed strictly.

The resolver's watcher (components-contrib ``nameresolution/hashicorp/consul/watcher.go``,
``getServiceNameFilter``) asks ``/v1/health/state/any`` with
``ServiceName=="a" or ServiceName=="b"`` — one equality per app it has resolved, joined by
``or``. Consul's filter language (go-bexpr) is much larger; answering a construct we do not
evaluate with anything but an error would be a *wrong answer* that a client cannot tell from a
right one, so everything outside this grammar is refused, naming the construct:

    filter   := match ( "or" match )*
    match    := "ServiceName" ( "==" ) string
              | "(" filter ")"
    string   := '"' chars '"'  (backslash escapes \\" and \\\\)  |  '`' chars '`'

Whitespace between tokens is free, ``or`` is case-sensitive (as in go-bexpr). Parentheses are
accepted because they cannot change the meaning of a pure disjunction.
"""

from __future__ import annotations

import re

from resolver.errors import InvalidRequest, shown

MAX_NAMES = 10_000
"""More names than this in one filter is refused (the request-size cap bounds it first)."""

_TOKEN = re.compile(r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<op>==|!=|[()]|[<>]=?|=~|!~|!)"""
                    r"""|(?P<word>[A-Za-z_][A-Za-z0-9_.\[\]-]*)|(?P<other>\S))""")
SUPPORTED = 'ServiceName=="NAME" joined by "or"'


def FilterError(message: str) -> InvalidRequest:  # noqa: N802  (raised like the class it builds)
    """A filter outside the supported grammar: an :class:`InvalidRequest` naming the construct."""
    return InvalidRequest("filter", f"{message}; supported: {SUPPORTED} (docs/consul.md)")


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None:  # only trailing whitespace is left
            break
        position = found.end()
        kind = found.lastgroup
        if kind is None:
            break
        tokens.append((kind, found.group(kind)))
    return tokens


def _unquote(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    body = token[1:-1]
    if re.search(r"\\[^\"\\]", body):
        raise FilterError(f"escape sequence in {shown(token)} is not supported (only \\\" and \\\\)")
    return body.replace('\\"', '"').replace("\\\\", "\\")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0
        self.names: list[str] = []

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FilterError("the filter ends too early")
        self.at += 1
        return token

    def disjunction(self) -> None:
        self.match()
        while (token := self.peek()) is not None and token[1] != ")":
            _, text = self.take()
            if text != "or":
                raise FilterError(f"{shown(text)} is not supported here" if text not in ("and", "not")
                                  else f"operator {text!r} is not supported")
            self.match()

    def match(self) -> None:
        kind, text = self.take()
        if text == "(":
            self.disjunction()
            if self.take()[1] != ")":
                raise FilterError("unbalanced parentheses")
            return
        if kind != "word":
            raise FilterError(f"expected a selector, found {shown(text)}")
        if text in ("not", "and", "or"):
            raise FilterError(f"operator {text!r} is not supported")
        if text != "ServiceName":
            raise FilterError(f"selector {shown(text)} is not supported")
        kind, operator = self.take()
        if operator != "==":
            raise FilterError(f"operator {shown(operator)} after ServiceName is not supported")
        kind, value = self.take()
        if kind != "string":
            raise FilterError(f"expected a quoted name after ServiceName==, found {shown(value)}")
        self.names.append(_unquote(value))
        if len(self.names) > MAX_NAMES:
            raise FilterError(f"more than {MAX_NAMES} names")


def service_names(text: str) -> tuple[str, ...]:
    """The service names a filter of the supported grammar selects, in order, without repeats."""
    if not text.strip():
        raise FilterError("the filter is empty")
    parser = _Parser(text)
    parser.disjunction()
    if parser.peek() is not None:
        raise FilterError(f"unexpected {shown(parser.peek()[1])}")  # type: ignore[index]
    return tuple(dict.fromkeys(parser.names))
