"""The asyncua internals the OPC UA connector relies on (connectors/opcua/asyncua_adapter.py), pinned to the asyncua
version they were read against and each exercised against the real simulator: an asyncua upgrade that moves one
fails here, by name, instead of as values lost somewhere downstream."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.ua_session import UaSession
from asyncua.common.events import get_filter_from_event_type

from connectors.opcua import asyncua_adapter as adapter
from connectors.opcua.asyncua_adapter import BatchSubscription
from connectors.opcua.browse import catalogue
from tests.ingest.conftest import FAST_LINE
from tests.simline import sim_opcua

UPGRADE = ("read every 'Private:' in connectors/opcua/asyncua_adapter.py against the installed asyncua, fix what "
           "moved, then set CHECKED_ASYNCUA_VERSION")


def test_asyncua_is_the_version_the_adapter_was_checked_against() -> None:
    installed = importlib.metadata.version("asyncua")
    assert installed == adapter.CHECKED_ASYNCUA_VERSION, (
        f"asyncua {installed} is installed, the adapter was checked against {adapter.CHECKED_ASYNCUA_VERSION}: "
        + UPGRADE)


class Batches:
    """What a BatchSubscription hands over: (changes, events, status_change, seq) per publish response."""

    def __init__(self) -> None:
        self.got: list[tuple[list[tuple[int, ua.DataValue]], list[Any], bool, int | None]] = []

    def __call__(self, changes: list[tuple[int, ua.DataValue]], events: list[Any], status_change: bool,
                 seq: int | None) -> None:
        self.got.append((changes, events, status_change, seq))

    def handles(self) -> set[int]:
        return {h for changes, _, _, _ in self.got for h, _ in changes}

    def events(self) -> int:
        return sum(len(ev) for _, ev, _, _ in self.got)

    def seqs(self) -> list[int]:
        return [seq for _, _, _, seq in self.got if seq is not None]


async def _until(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} (waited {timeout_s} s); " + UPGRADE)


def _loop_without_acks(session: UaSession, counter: list[int]) -> Callable[[], Any]:
    """The connector's publish loop reduced to its use of the adapter: it never acknowledges anything."""

    async def loop() -> None:
        while adapter.session_open(session):
            counter[0] += 1
            response = await session.publish([])
            callback = adapter.subscription_callback(session, response.Parameters.SubscriptionId)
            if callback is not None:
                await callback(response.Parameters)

    return loop


async def test_each_internal_against_the_simulator(tmp_path: Path, simulator_factory: Any) -> None:
    sim = await asyncio.to_thread(simulator_factory, ["--security", "none", "--speed", "40", "--tick", "1",
                                                      "--scenario", str(FAST_LINE)])
    cfg = sim_opcua(endpoint=sim.endpoint, request_timeout_s=5.0, session_timeout_s=60.0)
    session_file = tmp_path / "opcua-subscription-session.json"
    clients = []
    try:
        # make_client + Client.session_state_path: connect saves the token in asyncua's file; persisted_token reads it
        client = await adapter.make_client(cfg, session_file)
        clients.append(client)
        await asyncio.wait_for(client.connect(), 10)
        session = client.uaclient.session
        assert adapter.persisted_token(session_file) == adapter.session_token(client), (
            "persisted_token does not read the token asyncua saved in session_state_path: " + UPGRADE)

        # replace_publish_loop: the loop ensure_publish_loop starts is ours (session_open, subscription_callback)
        loops = [0]
        adapter.replace_publish_loop(session, _loop_without_acks(session, loops))
        first = Batches()
        params = ua.CreateSubscriptionParameters(RequestedPublishingInterval=100, RequestedLifetimeCount=600,
                                                 RequestedMaxKeepAliveCount=10, MaxNotificationsPerPublish=0,
                                                 PublishingEnabled=True, Priority=0)
        sub = BatchSubscription(session, params, first)
        await asyncio.wait_for(sub.init(), 5)
        assert sub.subscription_id is not None
        await _until(lambda: loops[0] > 0, 5, "replace_publish_loop: UaSession._publish_loop is not what "
                                              "ensure_publish_loop runs (asyncua would acknowledge at once)")

        # next_client_handle: our handles, and those Subscription hands out itself, never collide
        ns = await client.get_namespace_index(cfg.namespace_uri)
        infos = [i for i in await catalogue(cfg, client, ns) if i.unit and i.trace_key is None][:20]
        assert infos, "the simulator offers no analog nodes"
        handles = [adapter.next_client_handle(sub) for _ in infos]
        assert len(set(handles)) == len(handles), "next_client_handle repeats handles (Subscription._client_handle)"
        own = await sub.subscribe_data_change(client.get_node(infos[0].node_id))
        assert own not in handles, "Subscription hands out a handle next_client_handle gave us (_client_handle)"
        requests = []
        for handle, info in zip(handles, infos, strict=True):
            req = ua.MonitoredItemCreateRequest()
            req.ItemToMonitor = ua.ReadValueId(NodeId=info.node_id, AttributeId=ua.AttributeIds.Value)
            req.MonitoringMode = ua.MonitoringMode.Reporting
            req.RequestedParameters = ua.MonitoringParameters(ClientHandle=handle, SamplingInterval=0, QueueSize=100,
                                                              DiscardOldest=True)
            requests.append(req)
        create = ua.CreateMonitoredItemsParameters(SubscriptionId=sub.subscription_id, ItemsToCreate=requests,
                                                   TimestampsToReturn=ua.TimestampsToReturn.Both)
        results = await sub.server.create_monitored_items(create)
        assert all(r.StatusCode.is_good() for r in results)

        # register_event_item + event_item_handle + BatchSubscription.process_message (Subscription._monitored_items)
        etype = await client.nodes.base_event_type.get_child(f"{ns}:TraceEventType")
        root = await client.nodes.objects.get_child(f"{ns}:PilotLine")
        evfilter = await get_filter_from_event_type([etype])
        event_handle = adapter.next_client_handle(sub)
        req = ua.MonitoredItemCreateRequest()
        req.ItemToMonitor = ua.ReadValueId(NodeId=root.nodeid, AttributeId=ua.AttributeIds.EventNotifier)
        req.MonitoringMode = ua.MonitoringMode.Reporting
        req.RequestedParameters = ua.MonitoringParameters(ClientHandle=event_handle, QueueSize=1000, Filter=evfilter)
        create = ua.CreateMonitoredItemsParameters(SubscriptionId=sub.subscription_id, ItemsToCreate=[req],
                                                   TimestampsToReturn=ua.TimestampsToReturn.Both)
        res = await sub.server.create_monitored_items(create)
        assert res[0].StatusCode.is_good()
        adapter.register_event_item(sub, event_handle, evfilter, root, res[0].MonitoredItemId)
        assert adapter.event_item_handle(sub) == event_handle, "event_item_handle misses the registered event item"

        # BatchSubscription.publish_callback: whole publish responses with their sequence numbers, events included
        await _until(lambda: set(handles) <= first.handles(), 10,
                     "BatchSubscription.publish_callback is not called with the publish responses")
        await _until(lambda: first.events() > 0, 20, "no TraceEventType event came through BatchSubscription: "
                                                     "process_message does not find the registered event item")
        assert first.seqs() == sorted(first.seqs()) and len(set(first.seqs())) == len(first.seqs())

        # save_session_state (Client._save_session_state): the saved state is refreshed on demand
        saved_at = json.loads(session_file.read_text())["saved_at"]
        await asyncio.sleep(0.05)
        adapter.save_session_state(client)
        assert json.loads(session_file.read_text())["saved_at"] > saved_at, (
            "save_session_state does not refresh asyncua's session state (Client._save_session_state): " + UPGRADE)

        # drop_connection / cancel_client_tasks: asyncua's tasks stop, the server keeps the session
        await adapter.drop_connection(client)
        running = [name for name in adapter.CLIENT_TASKS if (t := getattr(client, name, None)) and not t.done()]
        publish_task = getattr(session, "_publish_task", None)
        if publish_task is not None and not publish_task.done():
            running.append("UaSession._publish_task")
        assert not running, f"cancel_client_tasks left asyncua tasks running: {running}; " + UPGRADE
        delivered = list(first.seqs())
        assert delivered, "nothing was published before the drop"

        # a new client resumes the session (persisted_token before, session_token after) ...
        token = adapter.persisted_token(session_file)
        client2 = await adapter.make_client(cfg, session_file)
        clients.append(client2)
        await asyncio.wait_for(client2.connect(), 10)
        session2 = client2.uaclient.session
        assert token is not None and adapter.session_token(client2) == token, (
            "the session was not resumed: drop_connection closed it, or asyncua no longer re-activates the "
            "session in session_state_path; " + UPGRADE)
        loops2 = [0]
        adapter.replace_publish_loop(session2, _loop_without_acks(session2, loops2))

        # ... transfers the subscription: nothing was acknowledged, so the server still has what it sent ...
        transfer = ua.TransferSubscriptionsParameters(SubscriptionIds=[sub.subscription_id], SendInitialValues=False)
        results2 = await session2.transfer_subscriptions(transfer)
        assert results2[0].StatusCode.is_good(), results2[0].StatusCode
        available = {int(n) for n in results2[0].AvailableSequenceNumbers or []}
        acknowledged = sorted(set(delivered) - available)
        assert not acknowledged, (
            f"the server no longer holds messages {acknowledged[:5]} that our publish loop never acknowledged: "
            "another publish loop acknowledged them; " + UPGRADE)
        second = Batches()
        sub2 = BatchSubscription(session2, ua.CreateSubscriptionParameters(), second)
        sub2.subscription_id = sub.subscription_id
        adapter.register_event_item(sub2, event_handle, evfilter)
        msg = await session2.republish(sub.subscription_id, delivered[0])
        sub2.process_message(msg)
        assert second.seqs() == [delivered[0]] and second.got[0][0], (
            "a republished message does not come through BatchSubscription.process_message whole")

        # republish: a message the server has comes back whole; one it does not have is None (never an exception
        # the connector would take for a failed request, never an empty message taken for data)
        if len(delivered) > 1:
            again = await adapter.republish(session2, sub.subscription_id, delivered[1], 5)
            assert again is not None and int(again.SequenceNumber) == delivered[1], (
                "adapter.republish does not return a message the server still has")
        assert await adapter.republish(session2, sub.subscription_id, max(delivered) + 10**6, 5) is None, (
            "adapter.republish: a message the server never had is not None (lost_at_source would miss it); " + UPGRADE)

        # ... and attach_subscription routes its new publish responses to the new BatchSubscription
        adapter.attach_subscription(session2, sub2)
        await _until(lambda: len(second.seqs()) > 1 and set(handles) <= second.handles(), 10,
                     "attach_subscription: the transferred subscription's publish responses do not reach it "
                     "(UaSession._subscription_callbacks)")
        assert loops2[0] > 0
    finally:
        for c in reversed(clients):
            await adapter.drop_connection(c)
        await asyncio.to_thread(sim.stop)
