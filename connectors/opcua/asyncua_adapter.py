"""Every use of asyncua internals, in one place: the session layer of the connector.

The connector needs three things asyncua's public API does not give (as of the version below):

- **acknowledge only what is durable.** asyncua's publish loop acknowledges a notification as soon as the callback
  returns; the connector acknowledges once the pipeline has the samples in its disk spool, so it replaces the
  session's publish loop and reads the subscription callbacks itself;
- **take whole publish responses.** asyncua's handler path spawns a task per value and its iterator path drops the
  oldest on overflow; ``BatchSubscription`` takes each ``PublishResult`` whole, in order, and manages its monitored
  items (client handles, the event item) the way ``Subscription`` does internally;
- **leave the server-side session alive when the connection drops**, so that a new connection (or a new process)
  re-activates it and *transfers* the subscription (OPC UA TransferSubscriptions, Part 4 5.13.7): the client's
  background tasks are cancelled without CloseSession, the session token is saved and read back in asyncua's own
  session-state file, and a transferred subscription is attached to the new session's publish loop.

Each function below says which internal it touches and why. ``CHECKED_ASYNCUA_VERSION`` is the version they were
read against; ``tests/ingest/test_asyncua_adapter.py`` pins it and exercises each use against the real simulator, so
an asyncua upgrade that moves one of them fails there by name rather than as lost data somewhere downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_session import SessionState, UaSession
from asyncua.common.node import Node
from asyncua.common.subscription import Subscription, SubscriptionItemData
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import BadMessageNotAvailable

from connectors.settings import OpcuaConfig

#: The asyncua release every private use below was read against (pyproject pins the same).
CHECKED_ASYNCUA_VERSION = "2.1.0"

#: Batch callback: (client handle, DataValue) changes, event field lists, a StatusChangeNotification came, and the
#: message's sequence number (None for a keep-alive).
OnBatch = Callable[[list[tuple[int, ua.DataValue]], list[Any], bool, int | None], None]

#: asyncua ``Client`` attributes holding its background tasks (auto-reconnect supervisor, stale watchdog, secure
#: channel renewal) in 2.1.0.
CLIENT_TASKS = ("_stale_watchdog_task", "_supervisor_task", "_renew_channel_task")


# ---------------------------------------------------------------------------------------------------------------
# the client
# ---------------------------------------------------------------------------------------------------------------


async def make_client(cfg: OpcuaConfig, session_file: Path | None) -> Client:
    """A new ``Client`` for every (re)connection (node ids are re-resolved, never reused), with security and auth.

    ``session_file``: asyncua's persisted session (``Client.session_state_path``, public in 2.1.0): ``connect``
    re-activates the session saved there when the server still has it, so its subscription can be transferred."""
    c = cfg
    client = Client(c.endpoint, timeout=c.request_timeout_s, watchdog_intervall=max(c.watchdog_interval_s, 1.0))
    client.session_timeout = int(c.session_timeout_s * 1000)
    client.application_uri = "urn:pilotline:twin:ingest"
    client.name = "pilotline-twin-ingest"
    if session_file is not None:
        client.session_state_path = session_file
    if c.auth_method == "username":
        client.set_user(c.username)
        client.set_password(c.password)
    if c.security_policy != "None":
        await ensure_client_certificate(c.certificate, c.private_key, client.application_uri)
        from asyncua.crypto import security_policies as sp

        policy = getattr(sp, f"SecurityPolicy{c.security_policy}")
        mode = getattr(ua.MessageSecurityMode, c.security_mode)
        server_cert = str(c.trusted_server_certificates[0]) if c.trusted_server_certificates else None
        if c.trusted_server_certificates:
            from asyncua.crypto.truststore import TrustStore
            from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

            store = TrustStore([Path(p) for p in c.trusted_server_certificates], [])
            await store.load()
            client.certificate_validator = CertificateValidator(
                CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_SERVER, store)
        await asyncio.wait_for(
            client.set_security(policy, str(c.certificate), str(c.private_key), server_certificate=server_cert,
                                mode=mode), c.connect_timeout_s)
    return client


async def ensure_client_certificate(cert: Path, key: Path, app_uri: str) -> None:
    """Create a self-signed client certificate and key when absent (Telegraf's habit), keep them otherwise."""
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    await setup_self_signed_certificate(
        key, cert, app_uri, socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"countryName": "DE", "organizationName": "pilotline", "commonName": "pilotline-twin-ingest"},
    )


async def cancel_client_tasks(client: Client) -> None:
    """Stop asyncua's own background tasks and the session's publish task, without closing the session.

    Private: ``Client._stale_watchdog_task`` / ``_supervisor_task`` / ``_renew_channel_task`` (``CLIENT_TASKS``),
    ``Client._cancel_task`` and ``UaSession._publish_task`` (2.1.0). Why: ``Client.disconnect`` would send
    CloseSession (and delete the subscription with it), and asyncua's supervisor would reconnect on its own and
    re-create subscriptions; the connector reconnects itself, with a new client, and transfers the subscription."""
    for name in CLIENT_TASKS:
        await client._cancel_task(getattr(client, name, None))
    await client._cancel_task(getattr(client.uaclient.session, "_publish_task", None))


async def drop_connection(client: Client) -> None:
    """Drop the connection but not the server-side session: its subscription can then be transferred."""
    with contextlib.suppress(Exception):
        client.uaclient.request_disconnect()
        await cancel_client_tasks(client)
        await asyncio.wait_for(client.close_secure_channel(), 1.0)
    with contextlib.suppress(Exception):
        client.disconnect_socket()


def save_session_state(client: Client) -> None:
    """Write the session token to ``Client.session_state_path`` now.

    Private: ``Client._save_session_state`` (2.1.0). Why: asyncua saves it on connect and resume only, and skips a
    saved session older than the session timeout (its ``saved_at``); the watchdog saves it every interval so that a
    process that crashed finds a fresh one to resume."""
    client._save_session_state()


def persisted_token(session_file: Path | None) -> str | None:
    """The session token in asyncua's session-state file, or None.

    Private: the file's format (a JSON object with ``authentication_token`` as a NodeId string, written by
    ``Client._save_session_state`` in 2.1.0). Why: read *before* ``connect``, it tells whether ``connect`` resumed
    that session (same token after) and the subscription may be transferred, or created a new one."""
    if session_file is None:
        return None
    try:
        return str(json.loads(session_file.read_text())["authentication_token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def session_token(client: Client) -> str:
    """The token of the client's current session (public ``UaSession.authentication_token``)."""
    return str(client.uaclient.session.authentication_token.to_string())


# ---------------------------------------------------------------------------------------------------------------
# the publish loop
# ---------------------------------------------------------------------------------------------------------------


def replace_publish_loop(session: UaSession, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Make ``loop()`` the coroutine the session runs as its publish loop.

    Private: ``UaSession._publish_loop``, which ``UaSession.ensure_publish_loop`` starts as ``_publish_task`` once a
    subscription exists (2.1.0). Why: asyncua's loop acknowledges each message as soon as the callback returns; the
    connector's acknowledges only what the pipeline has made durable."""
    session._publish_loop = loop  # type: ignore[method-assign]  # an instance attribute shadows the method


def session_open(session: UaSession) -> bool:
    """Whether a publish loop should go on: the session is neither closing nor closed.

    Reads the public ``UaSession.state`` (2.1.0; the loop asyncua ships tests its private ``_state`` the same way)."""
    return session.state not in (SessionState.CLOSING, SessionState.CLOSED)


def subscription_callback(session: UaSession, subscription_id: int) -> Callable[..., Any] | None:
    """The callback a publish response for ``subscription_id`` goes to, as asyncua's own loop looks it up.

    Private: ``UaSession._subscription_callbacks`` (2.1.0), filled by ``create_subscription``. Why: the replaced
    publish loop (``replace_publish_loop``) dispatches the responses itself."""
    return session._subscription_callbacks.get(subscription_id)


async def republish(session: UaSession, subscription_id: int, seq: int,
                    timeout_s: float) -> ua.NotificationMessage | None:
    """The message ``seq`` again from the server's retransmission queue, or None when the server no longer has it.

    Public ``UaSession.republish`` (2.1.0), but two server behaviours the connector relies on are read here: a
    conforming server answers ``BadMessageNotAvailable`` for a message it no longer has, asyncua's server (the
    simulator's) an empty ``NotificationMessage``; both are None. asyncua's server also removes a message from its
    queue once republished (Part 4 5.13.6 keeps it until acknowledged), so the connector keeps a republished message
    it could not hand on in memory rather than asking for it twice. Other failures (timeouts, a gone subscription)
    are raised."""
    try:
        msg = await asyncio.wait_for(session.republish(subscription_id, seq), timeout_s)
    except BadMessageNotAvailable:
        return None
    return msg if msg.NotificationData else None


def attach_subscription(session: UaSession, sub: Subscription) -> None:
    """Route a *transferred* subscription's publish responses to ``sub`` and make sure the publish loop runs.

    Private: ``UaSession._subscription_callbacks`` (2.1.0). Why: TransferSubscriptions has no client-side
    counterpart of ``create_subscription`` that registers the callback (``Subscription`` recreates instead)."""
    assert sub.subscription_id is not None
    session._subscription_callbacks[sub.subscription_id] = sub.publish_callback
    session.ensure_publish_loop()


# ---------------------------------------------------------------------------------------------------------------
# the subscription
# ---------------------------------------------------------------------------------------------------------------


class _NullHandler:
    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:  # pragma: no cover - never called
        pass


class BatchSubscription(Subscription):
    """A ``Subscription`` that hands each publish response over whole, in order, as one batch (``OnBatch``).

    Private: it overrides ``Subscription.publish_callback`` (what the session's publish loop calls with each
    ``PublishResult``) and reads ``Subscription._monitored_items`` (2.1.0) to tell event items from data items."""

    def __init__(self, session: UaSession, params: ua.CreateSubscriptionParameters, on_batch: OnBatch) -> None:
        super().__init__(session, params, _NullHandler())
        self._on_batch = on_batch

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        self.process_message(publish_result.NotificationMessage)

    def process_message(self, message: ua.NotificationMessage) -> None:
        data = message.NotificationData
        seq = int(message.SequenceNumber) if data else None
        changes: list[tuple[int, ua.DataValue]] = []
        events: list[Any] = []
        status_change = False
        for notif in data or ():
            if isinstance(notif, ua.DataChangeNotification):
                changes.extend((item.ClientHandle, item.Value) for item in notif.MonitoredItems)
            elif isinstance(notif, ua.EventNotificationList):
                for ev in notif.Events:
                    item = self._monitored_items.get(ev.ClientHandle)
                    if item is not None and isinstance(item.mfilter, ua.EventFilter):
                        events.append(ev.EventFields)
            elif isinstance(notif, ua.StatusChangeNotification):
                status_change = True
        self._on_batch(changes, events, status_change, seq)


def next_client_handle(sub: Subscription) -> int:
    """A new client handle for a monitored item of ``sub``, from the subscription's own counter.

    Private: ``Subscription._client_handle`` (2.1.0). Why: the connector creates monitored items with one
    CreateMonitoredItems request per 1 000 nodes instead of ``Subscription.subscribe_data_change``, and the handles
    must not collide with any the subscription hands out itself."""
    sub._client_handle += 1
    return sub._client_handle


def register_event_item(sub: Subscription, client_handle: int, mfilter: ua.EventFilter, node: Node | None = None,
                        server_handle: int | None = None) -> None:
    """Tell ``sub`` that ``client_handle`` is an event item with ``mfilter`` (``BatchSubscription`` then passes its
    events on).

    Private: ``Subscription._monitored_items`` and ``SubscriptionItemData`` (2.1.0). Why: the event item is created
    with CreateMonitoredItems directly (or comes with a transferred subscription), not with ``subscribe_events``."""
    data = SubscriptionItemData()
    data.client_handle = client_handle
    if node is not None:
        data.node = node
        data.attribute = AttributeIds.EventNotifier
    if server_handle is not None:
        data.server_handle = server_handle
    data.mfilter = mfilter
    sub._monitored_items[client_handle] = data


def event_item_handle(sub: Any) -> int | None:
    """The client handle of ``sub``'s event item, or None (saved with the state: a transferred subscription has it).

    Private: ``Subscription._monitored_items`` (2.1.0); ``sub`` is typed loosely because the state tests hand in a
    stand-in with only ``subscription_id`` and ``_monitored_items``."""
    items: dict[int, SubscriptionItemData] = sub._monitored_items
    return next((h for h, d in items.items() if isinstance(d.mfilter, ua.EventFilter)), None)


# ---------------------------------------------------------------------------------------------------------------
# asyncua's type annotations
# ---------------------------------------------------------------------------------------------------------------
# Not internals, but where asyncua's annotations and its runtime differ: its fields are annotated with wrapper classes
# (``ua.Int32``, ``ua.Int16``, ``ua.Boolean``) while the runtime takes, stores and compares plain ints and bools. The
# type check is silenced here, once, instead of at every call site.


def node_id(identifier: int | str, namespace: int = 0) -> ua.NodeId:
    """``ua.NodeId(identifier, namespace)`` with plain ints (asyncua annotates ``ua.Int32`` / ``ua.Int16``)."""
    return ua.NodeId(identifier, namespace)  # type: ignore[arg-type]


def property_path(start: ua.NodeId, name: str) -> ua.BrowsePath:
    """The browse path from ``start`` along a HasProperty reference (or a subtype) to the property ``name``."""
    el = ua.RelativePathElement()
    el.ReferenceTypeId = node_id(ObjectIds.HasProperty, 0)
    el.IsInverse = False  # type: ignore[assignment]  # annotated ua.Boolean
    el.IncludeSubtypes = True  # type: ignore[assignment]
    el.TargetName = ua.QualifiedName(name, 0)
    rp = ua.RelativePath()
    rp.Elements = [el]
    bp = ua.BrowsePath()
    bp.StartingNode = start
    bp.RelativePath = rp
    return bp


async def namespace_index(client: Client, uri: str) -> int:
    """The index of ``uri``; an empty ``uri`` means the first namespace after the server's own (index 2; index 1 is
    the server's application namespace, where most servers keep nothing of the process)."""
    if uri:
        return int(await client.get_namespace_index(uri))
    return min(2, len(await client.get_namespace_array()) - 1)
