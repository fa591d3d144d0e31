"""Decomposition sources and the names of score terms, in one place.

A model declares the *sources* its attention input is split into (today E token embedding,
P learned position, H earlier layers, N LayerNorm bias, B projection biases; longer names such
as ``"H0"`` or ``"img"`` are allowed). A score term is named by its (query source, key source):
single-letter sources concatenate (``"EP"``), otherwise they are joined by ``"_"`` (``"E_H0"``).
Sources are alphanumeric and never contain ``"_"``, so every name parses back uniquely. Term
expressions are sums: ``"EP+PP+BP"``.
"""

from __future__ import annotations

from typing import Iterable

from circuits.errors import CircuitsError

E = "E"  # token embedding W_E[token]
P = "P"  # learned positional embedding W_pos[pos]
H = "H"  # what earlier blocks wrote to the residual stream
N = "N"  # LayerNorm bias
B = "B"  # Q/K/V projection biases

SEPARATOR = "_"


def check_source(name: str) -> str:
    """``name`` if it is a valid source name (non-empty, alphanumeric, no ``"_"``)."""
    if not (isinstance(name, str) and name.isalnum() and name.isascii()):
        raise CircuitsError(f"invalid source name {name!r}: sources are non-empty and alphanumeric")
    return name


def term_name(query: str, key: str) -> str:
    """Name of the score term with query source ``query`` and key source ``key``."""
    check_source(query), check_source(key)
    if len(query) == 1 and len(key) == 1:
        return query + key
    return query + SEPARATOR + key


def parse_term(name: str) -> tuple[str, str]:
    """(query source, key source) of a term name; inverse of `term_name`."""
    if SEPARATOR in name:
        query, _, key = name.partition(SEPARATOR)
        ok = query.isalnum() and key.isalnum() and (len(query) > 1 or len(key) > 1)
    else:
        query, key = name[:1], name[1:]
        ok = len(name) == 2 and name.isalnum()
    if not ok:
        raise CircuitsError(f"invalid term name {name!r}: expected e.g. 'EP' or 'E_H0'")
    return query, key


def query_source(name: str) -> str:
    return parse_term(name)[0]


def key_source(name: str) -> str:
    return parse_term(name)[1]


def parse_expression(expression: str) -> list[str]:
    """The term names of a sum such as ``"EP + PP+BP"`` (spaces ignored, order kept)."""
    names = expression.replace(" ", "").split("+")
    if any(not n for n in names):
        raise CircuitsError(f"invalid term expression {expression!r}: expected e.g. 'EP+PP'")
    return names


def join_expression(names: Iterable[str]) -> str:
    """``["EP", "PP"]`` -> ``"EP+PP"``; inverse of `parse_expression`."""
    return "+".join(names)
