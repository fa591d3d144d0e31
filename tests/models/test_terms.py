"""Specification of source and term names: build, parse back, sum expressions."""

from __future__ import annotations

import pytest

from circuits.errors import CircuitsError
from circuits.models import HookedTextEncoder
from circuits.models.terms import (
    check_source,
    join_expression,
    key_source,
    parse_expression,
    parse_term,
    query_source,
    term_name,
)
from circuits.config import EncoderConfig


def test_single_letter_sources_concatenate():
    assert term_name("E", "P") == "EP"


def test_longer_source_names_are_joined_with_an_underscore():
    assert term_name("E", "H0") == "E_H0" and term_name("img", "P") == "img_P"


@pytest.mark.parametrize("query,key", [("E", "P"), ("E", "H0"), ("img", "txt"), ("H1", "B")])
def test_parse_term_inverts_term_name(query, key):
    assert parse_term(term_name(query, key)) == (query, key)
    assert (query_source(term_name(query, key)), key_source(term_name(query, key))) == (query, key)


@pytest.mark.parametrize("bad", ["E", "EPP", "E_", "_P", "E_P", "", "E+P"])
def test_malformed_term_names_are_rejected(bad):
    with pytest.raises(CircuitsError):
        parse_term(bad)


@pytest.mark.parametrize("bad", ["", "H_0", "a b"])
def test_source_names_are_alphanumeric_without_underscore(bad):
    with pytest.raises(CircuitsError):
        check_source(bad)


def test_expressions_parse_into_term_names_ignoring_spaces():
    assert parse_expression("EP + PP+E_H0") == ["EP", "PP", "E_H0"]
    assert join_expression(["EP", "PP"]) == "EP+PP"


def test_empty_summands_are_rejected():
    with pytest.raises(CircuitsError):
        parse_expression("EP++PP")


def test_model_term_names_are_built_by_term_name():
    enc = HookedTextEncoder(EncoderConfig(n_layers=2, d_model=8, d_head=4, n_heads=2), d_vocab=5, n_ctx=4)
    sources = enc.value_sources(1)
    assert enc.term_names(1) == [term_name(s, t) for s in sources for t in sources]
    assert all(f"blocks.1.attn.hook_score_{t}" in enc.hook_dict for t in enc.term_names(1))
