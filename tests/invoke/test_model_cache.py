"""The multi-model bookkeeping: placement, least-recently-used eviction, pins, calls in flight."""

from __future__ import annotations

import pytest

from sagehost.core.errors import InvalidRequest
from sagehost.core.multimodel import check_target_model, model_name
from sagehost.invoke.model_cache import Candidate, CopyState, ModelCache, Placement

ONE = [Candidate("i0", 0)]


def loaded(cache: ModelCache, instance: str, *targets: str, charge: int = 10) -> None:
    for target in targets:
        placement = cache.place(target, charge, [Candidate(instance, 0)])
        assert placement == Placement(instance, ())
        cache.loaded(instance, target)


def test_a_model_goes_where_there_is_room_on_the_least_busy_instance() -> None:
    cache = ModelCache(budget=100)
    loaded(cache, "i0", "a", charge=60)
    # i1 is busier but i0 has no room for 50 more: room wins over load.
    placement = cache.place("b", 50, [Candidate("i0", 0), Candidate("i1", 3)])
    assert placement == Placement("i1", ())
    # With room on both, the least busy wins.
    placement = cache.place("c", 10, [Candidate("i0", 5), Candidate("i1", 2)])
    assert placement == Placement("i1", ())
    assert cache.copy("i1", "c") is not None
    assert cache.copy("i1", "c").state is CopyState.LOADING  # type: ignore[union-attr]
    assert cache.holders("c") == []
    cache.loaded("i1", "c")
    assert cache.holders("c") == ["i1"]


def test_the_least_recently_used_model_is_evicted_first() -> None:
    cache = ModelCache(budget=30)
    loaded(cache, "i0", "a", "b", "c")
    cache.end_call("i0", cache.begin_call("i0", "a"))  # a is now the most recently used
    placement = cache.place("d", 10, ONE)
    assert placement == Placement("i0", ("b",))
    assert cache.copy("i0", "b").state is CopyState.UNLOADING  # type: ignore[union-attr]
    # The unloading copy still counts until it is removed.
    assert cache.used("i0") == 40
    cache.remove("i0", "b")
    cache.loaded("i0", "d")
    assert [c.target for c in cache.copies("i0")] == ["c", "a", "d"]
    assert cache.place("e", 20, ONE) == Placement("i0", ("c", "a"))


def test_pinned_and_busy_models_are_never_evicted() -> None:
    cache = ModelCache(budget=30)
    loaded(cache, "i0", "a", "b", "c")
    cache.pin("a")
    call = cache.begin_call("i0", "b")
    assert cache.place("d", 10, ONE) == Placement("i0", ("c",))
    cache.remove("i0", "c")
    # Only a (pinned) and b (a call in flight) remain, with d loading: nothing can go.
    assert cache.place("e", 10, ONE) is None
    assert cache.end_call("i0", call) is True
    cache.loaded("i0", "d")
    assert cache.place("e", 10, ONE) == Placement("i0", ("b",))
    assert cache.unpin("a") is True
    assert cache.unpin("a") is False
    assert cache.pins == frozenset()


def test_a_loading_copy_reserves_its_memory() -> None:
    cache = ModelCache(budget=20)
    assert cache.place("a", 15, ONE) == Placement("i0", ())
    # a is still loading: it cannot be evicted and its 15 bytes are taken.
    assert cache.place("b", 10, ONE) is None
    assert cache.victims("i0", 1) is None


def test_evictions_come_from_the_instance_with_the_oldest_models() -> None:
    cache = ModelCache(budget=20)
    loaded(cache, "i0", "a", "b")
    loaded(cache, "i1", "c", "d")
    cache.end_call("i0", cache.begin_call("i0", "a"))
    cache.end_call("i0", cache.begin_call("i0", "b"))
    placement = cache.place("e", 10, [Candidate("i0", 0), Candidate("i1", 9)])
    assert placement == Placement("i1", ("c",))


def test_a_model_larger_than_the_budget_never_fits() -> None:
    cache = ModelCache(budget=20)
    assert cache.place("huge", 21, ONE) is None
    assert cache.instances() == []


def test_an_instance_already_holding_the_model_is_skipped() -> None:
    cache = ModelCache(budget=100)
    loaded(cache, "i0", "a")
    assert cache.place("a", 10, ONE) is None
    assert cache.place("a", 10, [Candidate("i0", 0), Candidate("i1", 5)]) == Placement("i1", ())


def test_spare_finds_room_without_eviction_only() -> None:
    cache = ModelCache(budget=20)
    loaded(cache, "i0", "a")
    loaded(cache, "i1", "b", "c")
    candidates = [Candidate("i0", 4), Candidate("i1", 0), Candidate("i2", 7)]
    assert cache.spare("a", 10, candidates) == "i2"
    assert cache.spare("a", 10, candidates[:2]) is None


def test_remove_forgets_and_end_call_on_a_gone_copy_is_harmless() -> None:
    cache = ModelCache(budget=20)
    loaded(cache, "i0", "a")
    call = cache.begin_call("i0", "a")
    removed = cache.remove("i0", "a")
    assert removed is call and removed.in_use == 1
    assert cache.end_call("i0", call) is False
    assert cache.remove("i0", "a") is None
    assert cache.instances() == []


def test_a_call_ends_on_the_copy_it_began_on() -> None:
    cache = ModelCache(budget=20)
    loaded(cache, "i0", "a")
    lost = cache.begin_call("i0", "a")
    assert cache.discard("i0", lost) is True
    loaded(cache, "i0", "a")  # loaded again: a new copy
    again = cache.begin_call("i0", "a")
    assert cache.end_call("i0", lost) is False
    assert (again.in_use, cache.victims("i0", 1)) == (1, None)
    assert cache.end_call("i0", again) is True
    assert (again.in_use, cache.victims("i0", 1)) == (0, ["a"])
    assert cache.discard("i0", lost) is False  # a stale copy never removes the new one
    assert cache.copy("i0", "a") is again


@pytest.mark.parametrize("target", ["m.tar.gz", "sub/dir/m.tar.gz", "a b/c%d#e?.tgz", "dir"])
def test_valid_target_models(target: str) -> None:
    check_target_model(target)


@pytest.mark.parametrize(
    "target", ["/abs.tar.gz", "../up.tar.gz", "a/../b.tar.gz", "a//b.tar.gz", "./m", "dir/"]
)
def test_target_models_leaving_the_prefix_are_refused(target: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        check_target_model(target)
    assert error.value.message == (
        f"TargetModel {target} is not a valid model path: it must be relative to the "
        "endpoint's model data prefix, without empty, '.' or '..' segments."
    )


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("a\x00b.tar.gz", "it must not contain control characters"),
        ("m.tar.gz\n", "it must not contain control characters"),
        ("a\x7fb", "it must not contain control characters"),
        ("a" * 256, "each of its segments must be at most 255 bytes long"),
        ("d/" + "\u00e9" * 128, "each of its segments must be at most 255 bytes long"),
        ("d/" * 512 + "m", "it must be at most 1024 characters long"),
    ],
)
def test_target_models_no_file_system_could_hold_are_refused(target: str, reason: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        check_target_model(target)
    shown = target.encode("unicode_escape").decode("ascii") if "it must not" in reason else target
    assert error.value.message == f"TargetModel {shown} is not a valid model path: {reason}."


def test_the_longest_segment_and_path_are_valid() -> None:
    check_target_model("a" * 255)
    check_target_model("d/" + "\u00e9" * 127 + "a")
    check_target_model("/".join(["a" * 255] * 3) + "/abc")
    check_target_model("d/" * 511 + "mm")


def test_model_names_are_stable_opaque_hashes() -> None:
    assert model_name("sub/dir/m.tar.gz") == model_name("sub/dir/m.tar.gz")
    assert model_name("a.tar.gz") != model_name("b.tar.gz")
    assert len(model_name("a.tar.gz")) == 32
    assert model_name("a.tar.gz").isalnum()


def test_room_later_counts_only_pinned_models_as_permanent() -> None:
    cache = ModelCache(budget=30)
    loaded(cache, "i0", "a", "b")
    cache.begin_call("i0", "b")
    assert cache.room_later("i0", 30) is True  # a and b will leave, however busy
    cache.pin("a")
    assert cache.room_later("i0", 20) is True
    assert cache.room_later("i0", 21) is False
    assert cache.room_later("i1", 30) is True  # an instance holding nothing
