"""The routing table's copy for gateway replicas: what is copied, versions and long polls, and
the acknowledgements that let an instance stop only once no replica will call it."""

from __future__ import annotations

import asyncio
from typing import Any

from sagehost.core.endpoint_states import EndpointStatus
from sagehost.core.live import EndpointDirectory, LiveEndpoint, LiveVariant
from sagehost.core.ports import Instance
from sagehost.invoke.replication import RouteFeed, RouteFollower, export_routes
from sagehost.testing.fakes import FakeFleet, FakeInstance

ACCOUNT = "000000000000"


def instance(name: str, *, ready: bool = True) -> FakeInstance:
    member = FakeInstance(name, ready=ready)
    member.base_url = f"http://127.0.0.1:1/{name}"
    return member


def endpoint(name: str, *members: FakeInstance, **fields: Any) -> LiveEndpoint:
    live = LiveEndpoint(ACCOUNT, name, "us-east-1", EndpointStatus.IN_SERVICE, **fields)
    live.set_variants((LiveVariant("AllTraffic", 1.0, FakeFleet(*members)),))
    return live


def directory(*endpoints: LiveEndpoint) -> EndpointDirectory:
    table = EndpointDirectory()
    for live in endpoints:
        table.put(live)
    return table


def test_only_plain_endpoints_and_ready_instances_are_copied() -> None:
    plain = endpoint("plain", instance("a"), instance("b", ready=False))
    creating = endpoint("creating", instance("c"))
    creating.status = EndpointStatus.CREATING
    asynchronous = endpoint("async", instance("d"), async_inference=True)
    multi_model = endpoint("mme", instance("e"))
    multi_model.variants[0].models = object()  # type: ignore[assignment]
    routes = export_routes(directory(plain, creating, asynchronous, multi_model))
    assert routes == [
        {
            "account": ACCOUNT,
            "name": "plain",
            "region": "us-east-1",
            "status": "InService",
            "timeout": 60.0,
            "variants": [
                {
                    "name": "AllTraffic",
                    "weight": 1.0,
                    "container": "primary",
                    "routing": "LEAST_OUTSTANDING_REQUESTS",
                    "instances": [["a", "http://127.0.0.1:1/a"]],
                }
            ],
        }
    ]


def test_a_poll_waits_for_a_new_version_and_acknowledges_the_last() -> None:
    async def main() -> None:
        a = instance("a")
        table = directory(endpoint("e", a))
        feed = RouteFeed(table)
        first = await feed.poll("r1", 0, wait_s=5)
        assert first["version"] == 1 and first["endpoints"][0]["name"] == "e"
        waiting = asyncio.ensure_future(feed.poll("r1", 1, wait_s=5))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # nothing changed
        a.ready = False
        feed.refresh()
        second = await asyncio.wait_for(waiting, 1)
        assert second["version"] == 2
        assert second["endpoints"][0]["variants"][0]["instances"] == []

    asyncio.run(main())


def test_synced_waits_for_every_replica_holding_an_older_copy() -> None:
    async def main() -> None:
        a = instance("a")
        table = directory(endpoint("e", a))
        feed = RouteFeed(table)
        await feed.poll("r1", 0, wait_s=5)  # r1 holds version 1
        await feed.poll("r2", 0, wait_s=5)  # so does r2
        table.remove(ACCOUNT, "e")
        syncing = asyncio.ensure_future(feed.synced())  # version 2 drops the endpoint
        await asyncio.sleep(0.01)
        assert not syncing.done()
        polled = asyncio.ensure_future(feed.poll("r1", 1, wait_s=5))
        assert (await polled)["version"] == 2
        feed.forget("r2")  # a replica that exits is not waited for
        await asyncio.sleep(0.01)
        assert not syncing.done()  # r1 was sent version 2 but has not acknowledged it
        acknowledging = asyncio.ensure_future(feed.poll("r1", 2, wait_s=0.5))
        await asyncio.wait_for(syncing, 1)
        await acknowledging

    asyncio.run(main())


def test_synced_gives_up_on_a_silent_replica() -> None:
    async def main() -> None:
        table = directory(endpoint("e", instance("a")))
        feed = RouteFeed(table, sync_timeout_s=0.05)
        await feed.poll("r1", 0, wait_s=5)
        table.remove(ACCOUNT, "e")
        await asyncio.wait_for(feed.synced(), 1)

    asyncio.run(main())


def test_the_follower_keeps_instances_and_drains_dropped_ones_before_acknowledging() -> None:
    async def main() -> None:
        a, b = instance("a"), instance("b")
        table = directory(endpoint("e", a, b))
        feed = RouteFeed(table)
        copy = EndpointDirectory()
        made: list[Instance] = []

        def make(instance_id: str, url: str) -> Instance:
            member = FakeInstance(instance_id)
            member.base_url = url
            made.append(member)
            return member

        follower = RouteFollower(copy, lambda after: feed.poll("r1", after, 5), make)
        following = asyncio.ensure_future(follower.run())
        while follower.version < 1:
            await asyncio.sleep(0.005)
        live = copy.get(ACCOUNT, "E")
        assert live is not None
        held = {i.instance_id: i for i in live.variants[0].fleet.instances}
        assert set(held) == {"a", "b"}
        held["b"].outstanding = 1  # type: ignore[misc]  # a call in flight to b
        b.ready = False
        syncing = asyncio.ensure_future(feed.synced())
        await asyncio.sleep(0.05)
        live = copy.get(ACCOUNT, "e")
        assert live is not None
        assert [i.instance_id for i in live.variants[0].fleet.instances] == ["a"]
        assert live.variants[0].fleet.instances[0] is held["a"]  # kept, with its counts
        assert not syncing.done()  # b's call is still in flight
        held["b"].outstanding = 0  # type: ignore[misc]
        await asyncio.wait_for(syncing, 1)
        assert len(made) == 2
        following.cancel()

    asyncio.run(main())


def test_a_copy_the_follower_cannot_apply_empties_its_table_and_it_goes_on() -> None:
    async def main() -> None:
        copy = EndpointDirectory()
        copy.put(endpoint("stale", instance("a")))
        updates = [
            {"version": 1, "endpoints": [{"account": ACCOUNT}]},  # no name: cannot be applied
            {"version": 2, "endpoints": []},
        ]
        asked: list[int] = []

        async def fetch(after: int) -> dict[str, Any]:
            asked.append(after)
            if updates:
                return updates.pop(0)
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

        follower = RouteFollower(copy, fetch, lambda i, url: instance(i), retry_s=0.01)
        following = asyncio.ensure_future(follower.run())
        async with asyncio.timeout(5):  # a follower that stopped on the bad copy never gets here
            while follower.version < 2:
                await asyncio.sleep(0.005)
        # After the bad copy: nothing is served from the stale table, and polling went on.
        assert copy.all() == []
        assert asked == [0, 0, 2]
        following.cancel()

    asyncio.run(main())
