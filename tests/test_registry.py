"""Every registered primitive carries every part of itself (patterndsl/primitives.py),
and everything generated from the registry sees every primitive: a primitive that
lacks a part, or that the strategies never draw, fails here."""
from __future__ import annotations

import pytest
from hypothesis import find, settings

import patterndsl
from patterndsl import strategies as S
from patterndsl.primitives import PRIMITIVES, Primitive

# The parts each primitive must write itself (the block methods have a correct, slow
# default: evaluating the block; `simplify` defaults to no rule; `call_sources` has a
# default for primitives without parameters, and the strategies tests below draw it).
OWN_METHODS = ("predicate", "row_structure", "row_bound", "source", "reference_pair")
OWN_DATA = ("name", "meaning", "examples")


def defines(cls, attribute: str) -> bool:
    """Whether a class between cls and Primitive (excluded) defines the attribute."""
    return any(attribute in klass.__dict__ for klass in cls.__mro__[:cls.__mro__.index(Primitive)])


def test_the_check_sees_a_missing_part():
    class Incomplete(Primitive):
        name = "incomplete"

        def predicate(self, i, j, n):
            return i == j

    assert defines(Incomplete, "predicate") and not defines(Incomplete, "row_structure")
    assert not defines(Incomplete, "meaning")


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_every_primitive_has_every_part(name):
    cls = PRIMITIVES[name]
    missing = [part for part in OWN_METHODS + OWN_DATA if not defines(cls, part)]
    assert missing == [], f"{name} lacks {missing}"
    assert cls.name == name
    assert cls.meaning and all(isinstance(call, str) and call.startswith(name) and isinstance(text, str) and text
                               for call, text in cls.meaning)
    assert cls.examples


def test_strategies_know_every_primitive():
    assert S.PRIMITIVE_NAMES == tuple(PRIMITIVES)


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_strategies_draw_every_primitive(name):
    """The default strategy (every primitive) draws this one, and its own strategy
    draws only calls of it."""
    def is_call_of_it(source):
        return patterndsl.compile(source, 16, simplify=False).pattern().name == name

    find(S.primitive_sources(), is_call_of_it, settings=settings(max_examples=2000, database=None, derandomize=True))
    own = find(S.primitive_sources((name,)), lambda source: True, settings=settings(database=None, derandomize=True))
    assert is_call_of_it(own)
