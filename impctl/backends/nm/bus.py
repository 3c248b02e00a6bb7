"""The D-Bus system bus, with dbus-next: connection, calls, properties, signals.

The only module of impctl that imports dbus_next (tests/unit/test_layers.py
checks it), and the one place where D-Bus errors become the project's errors
(`map_error`). Nothing of dbus-next leaks out: calls return plain bodies,
properties come unwrapped, signals arrive as `Signal`, and Variants for
outgoing values are made with `variant`.

The bus honours DBUS_SYSTEM_BUS_ADDRESS (the lab runs a private system bus).
Raw message calls are used instead of introspected proxies: one round trip
per call, no Introspect, and the signatures are spelled out where they matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import BusType, MessageType
from dbus_next.errors import DBusError
from dbus_next.message import Message
from dbus_next.signature import Variant

from impctl.backends.nm.defs import DBUS, DBUS_PATH, PROPS, SERVICE_NAMES, is_path
from impctl.model.errors import (
    ImpctlError,
    NoSuchInterface,
    OperationTimeout,
    PermissionDenied,
    ServiceUnavailable,
)
from impctl.model.record import record

DEFAULT_CALL_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 3.0
UNSUBSCRIBE_TIMEOUT_S = 1.0


# ---------------------------------------------------------------------------
# errors: one place


class DBusCallError(ImpctlError):
    """A D-Bus error reply impctl has no better name for; carries the D-Bus error name."""

    kind = "dbus_error"

    def __init__(self, message: str, error_name: str) -> None:
        super().__init__(message)
        self.error_name = error_name


_NOT_RUNNING = {"org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner"}
_DENIED = {
    "org.freedesktop.DBus.Error.AccessDenied",
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
}
_NO_ANSWER = {"org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout"}
_GONE = {"org.freedesktop.NetworkManager.UnknownDevice", "org.freedesktop.DBus.Error.UnknownObject"}
_GONE_IF_OBJECT = {"org.freedesktop.DBus.Error.UnknownMethod", "org.freedesktop.DBus.Error.UnknownInterface"}


def map_error(error_name: str, text: str, destination: str, what: str) -> ImpctlError:
    """A D-Bus error reply as the project's error, in one line."""
    service = SERVICE_NAMES.get(destination, destination)
    # dbus-python services (python-dbusmock) send the whole Python traceback: its last line says it.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    if error_name in _NOT_RUNNING:
        return ServiceUnavailable(
            f"{service} is not running on the system bus",
            hint=f"start {service}, or point DBUS_SYSTEM_BUS_ADDRESS at the bus it runs on",
        )
    if error_name in _DENIED or error_name.endswith(".PermissionDenied"):
        return PermissionDenied(f"{service} refused {what}: {text}", hint="run impctl as root")
    if error_name in _NO_ANSWER:
        return OperationTimeout(f"{service} did not answer {what} in time")
    # GDBus answers a call on a removed object with UnknownMethod "... object at path ...".
    if error_name in _GONE or (error_name in _GONE_IF_OBJECT and "object at path" in text):
        # An object path we just read vanished: a device went away mid-way.
        return NoSuchInterface(f"{what}: the interface disappeared ({text})")
    return DBusCallError(f"{service}: {what} failed: {text} ({error_name})", error_name)


def _bus_address_text() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dbus/system_bus_socket")


# ---------------------------------------------------------------------------
# values


def unwrap(value: Any) -> Any:
    """Variants (nested in dicts and lists) to plain Python values."""
    if isinstance(value, Variant):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def variant(signature: str, value: Any) -> Any:
    """A value for an 'sv' dict or a 'v' argument (opaque to the callers)."""
    return Variant(signature, value)


@record
class Signal:
    """A D-Bus signal as impctl sees it."""

    path: str
    interface: str
    member: str
    body: list[Any]


def _signal_of(msg: Message) -> Signal:
    return Signal(msg.path or "", msg.interface or "", msg.member or "", list(msg.body))


def match_rule(interface: str, member: str, *, path: str | None = None, **args: str) -> str:
    """A match rule for signals `interface.member` (from `path`, with argN/sender filters)."""
    rule = f"type='signal',interface='{interface}',member='{member}'"
    if path is not None:
        rule += f",path='{path}'"
    return rule + "".join(f",{k}='{v}'" for k, v in args.items())


# ---------------------------------------------------------------------------
# the bus


class SystemBus:
    """One connection to the system bus with typed helpers around raw method calls."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus

    @classmethod
    async def connect(cls, timeout_s: float = CONNECT_TIMEOUT_S) -> SystemBus:
        where = _bus_address_text()
        try:
            async with asyncio.timeout(timeout_s):
                bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except TimeoutError:
            raise OperationTimeout(f"the D-Bus system bus ({where}) did not answer in {timeout_s:g} s") from None
        except PermissionError:
            raise PermissionDenied(f"not allowed to connect to the D-Bus system bus ({where})") from None
        except (OSError, EOFError, ValueError) as exc:
            # FileNotFoundError / ConnectionRefusedError: no dbus-daemon there;
            # dbus_next.errors.InvalidAddressError is a ValueError.
            raise ServiceUnavailable(
                f"cannot connect to the D-Bus system bus ({where}): {exc.__class__.__name__}",
                hint="is dbus-daemon running? DBUS_SYSTEM_BUS_ADDRESS selects another bus",
            ) from None
        except Exception as exc:  # dbus_next.errors.AuthError and friends
            raise ServiceUnavailable(f"cannot connect to the D-Bus system bus ({where}): {exc}") from None
        return cls(bus)

    @property
    def connected(self) -> bool:
        return bool(self._bus.connected)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._bus.disconnect()  # type: ignore[no-untyped-call]

    async def disconnected(self) -> None:
        """Return when the connection is lost (dbus-daemon restarted, socket closed)."""
        with contextlib.suppress(Exception):
            await self._bus.wait_for_disconnect()  # type: ignore[no-untyped-call]

    async def call(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        *,
        timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        what: str | None = None,
    ) -> list[Any]:
        """One method call; the reply's body (Variants left in), or the project's error."""
        what = what or member
        msg = Message(destination=destination, path=path, interface=interface, member=member,
                      signature=signature, body=body or [])
        try:
            async with asyncio.timeout(timeout_s):
                reply = await self._bus.call(msg)
        except TimeoutError:
            service = SERVICE_NAMES.get(destination, destination)
            raise OperationTimeout(f"{service} did not answer {what} in {timeout_s:g} s") from None
        except DBusError as exc:
            raise map_error(exc.type, exc.text, destination, what) from None
        except (OSError, EOFError) as exc:
            raise ServiceUnavailable(f"lost the D-Bus system bus during {what}: {exc}") from None
        if reply is None:
            return []
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise map_error(reply.error_name or "", text, destination, what)
        return list(reply.body)

    async def get_all(self, destination: str, path: str, interface: str) -> dict[str, Any]:
        body = await self.call(destination, path, PROPS, "GetAll", "s", [interface], what=f"reading {path}")
        return unwrap(body[0]) if body else {}

    async def get_all_or_empty(self, destination: str, path: str | None, interface: str) -> dict[str, Any]:
        """Properties of an optional interface/object: {} when it is absent or gone."""
        if path is None or not is_path(path):
            return {}
        try:
            return await self.get_all(destination, path, interface)
        except (NoSuchInterface, DBusCallError):
            return {}

    async def get_or_none(self, destination: str, path: str | None, interface: str, name: str) -> Any:
        """One property of an optional object, or None when it (or the object) is absent or gone.

        For a single value, cheaper than GetAll: NM's objects have dozens of properties and
        unmarshalling each costs start-up time.
        """
        if path is None or not is_path(path):
            return None
        try:
            body = await self.call(destination, path, PROPS, "Get", "ss", [interface, name],
                                   what=f"reading {path}")
        except (NoSuchInterface, DBusCallError):
            return None
        return unwrap(body[0]) if body else None

    async def add_match(self, rule: str) -> None:
        await self.call(DBUS, DBUS_PATH, DBUS, "AddMatch", "s", [rule], what="subscribing to signals")

    async def remove_match(self, rule: str) -> None:
        """Best effort, briefly: a rule left behind goes with the connection anyway."""
        with contextlib.suppress(ImpctlError):
            await self.call(DBUS, DBUS_PATH, DBUS, "RemoveMatch", "s", [rule],
                            timeout_s=UNSUBSCRIBE_TIMEOUT_S, what="unsubscribing")

    def subscribe(self, rules: Sequence[str], on_signal: Callable[[Signal], None]) -> Subscription:
        """Call `on_signal` for every signal matching `rules`, while the context is entered."""
        return Subscription(self, self._bus, rules, on_signal)

    @contextlib.asynccontextmanager
    async def signals(
        self, rules: Sequence[str], accept: Callable[[Signal], bool]
    ) -> AsyncIterator[asyncio.Queue[Signal]]:
        """Subscribe *before* the caller acts or reads state, so no signal is lost.

        Yields a queue receiving every signal for which `accept` is true.
        """
        queue: asyncio.Queue[Signal] = asyncio.Queue()

        def put(signal: Signal) -> None:
            if accept(signal):
                queue.put_nowait(signal)

        async with self.subscribe(rules, put):
            yield queue


class Subscription:
    """Match rules and a message handler, as a plain async context manager (no
    generator left suspended at shutdown), whose exit does not wait on a bus that
    is gone. The rules live in dbus-daemon, so they survive the sender restarting."""

    def __init__(self, bus: SystemBus, connection: MessageBus, rules: Sequence[str],
                 on_signal: Callable[[Signal], None]) -> None:
        self._bus = bus
        self._connection = connection
        self._rules = list(rules)
        self._on_signal = on_signal
        self._added: list[str] = []

    def _handler(self, msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL:
            self._on_signal(_signal_of(msg))

    async def __aenter__(self) -> None:
        self._connection.add_message_handler(self._handler)
        try:
            for rule in self._rules:
                await self._bus.add_match(rule)
                self._added.append(rule)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *_exc: object) -> None:
        self._connection.remove_message_handler(self._handler)
        added, self._added = self._added, []
        if not self._bus.connected:
            return  # the rules went with the connection
        for rule in added:
            await self._bus.remove_match(rule)


@contextlib.asynccontextmanager
async def system_bus(timeout_s: float = CONNECT_TIMEOUT_S) -> AsyncIterator[SystemBus]:
    bus = await SystemBus.connect(timeout_s)
    try:
        yield bus
    finally:
        bus.close()
