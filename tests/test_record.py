"""``record`` behaves as a frozen slotted dataclass where the runtime relies on it."""

from __future__ import annotations

import copy
import pickle
from dataclasses import FrozenInstanceError, field

import pytest

from actors._record import record, replace
from runtime.wire.protocol import ActorSpec, ChildOptions, Ready


@record
class Point:
    """A point."""

    x: int
    y: int = 0


@record
class Pair:
    x: int
    y: int


@record(frozen=False)
class Tally:
    name: str
    seen: list[str] = field(default_factory=list)
    count: int = 0


@pytest.mark.timeout(10)
def test_a_record_is_built_compared_and_hashed_by_value() -> None:
    assert Point(1) == Point(1, 0) == Point(x=1, y=0)
    assert Point(1) != Point(2)
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert len({Point(1), Point(1), Point(2)}) == 2
    assert repr(Point(1, 2)) == "Point(x=1, y=2)"
    assert Point.__doc__ == "A point."


@pytest.mark.timeout(10)
def test_records_of_different_types_with_equal_values_differ() -> None:
    # unlike tuples: a message is never equal to another kind of message of the same values
    assert Point(1, 2) != Pair(1, 2)  # type: ignore[comparison-overlap]
    assert Ready(1) != (1, True)  # type: ignore[comparison-overlap]


@pytest.mark.timeout(10)
def test_a_record_refuses_assignment_and_holds_no_dict() -> None:
    point = Point(1)
    with pytest.raises(FrozenInstanceError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del point.x
    assert not hasattr(point, "__dict__")


@pytest.mark.timeout(10)
def test_a_record_pickles_and_copies_to_an_equal_one() -> None:
    options = ChildOptions("transient", "resume", 1.5)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(options, protocol)) == options
    assert copy.deepcopy(Point(1, 2)) == Point(1, 2)


@pytest.mark.timeout(10)
def test_a_keyword_only_record_takes_its_fields_by_name_only() -> None:
    with pytest.raises(TypeError):
        ActorSpec("a1")  # type: ignore[call-arg]
    assert ActorSpec.__match_args__ == ()


@pytest.mark.timeout(10)
def test_a_record_matches_class_patterns_by_position_and_by_name() -> None:
    match Point(1, 2):
        case Point(1, y=2):
            matched = True
        case _:
            matched = False
    assert matched


@pytest.mark.timeout(10)
def test_replace_copies_a_record_with_some_fields_changed() -> None:
    point = Point(1, 2)
    assert replace(point, y=3) == Point(1, 3)
    assert point == Point(1, 2)
    with pytest.raises(TypeError):
        replace(point, z=3)


@pytest.mark.timeout(10)
def test_an_unfrozen_record_takes_assignments_and_compares_by_identity() -> None:
    tally = Tally("a")
    tally.count += 1
    assert repr(tally) == "Tally(name='a', seen=[], count=1)"
    assert tally == tally
    assert tally != Tally("a", [], 1)
    assert len({tally, Tally("a")}) == 2
    with pytest.raises(AttributeError):
        tally.other = 1  # type: ignore[attr-defined]  # slotted: a typo fails loudly


@pytest.mark.timeout(10)
def test_a_default_factory_makes_a_new_value_for_each_record() -> None:
    first, second = Tally("a"), Tally("b")
    first.seen.append("x")
    assert second.seen == []
    given = ["y"]
    assert Tally("c", given).seen is given


@pytest.mark.timeout(10)
def test_a_field_default_given_through_field_is_its_default() -> None:
    @record
    class Knob:
        level: int = field(default=3)

    assert Knob().level == 3
    with pytest.raises(TypeError, match="give a default or a factory"):

        @record
        class Broken:
            level: int = field()
