"""paho-mqtt on the event loop, reading its socket in large gulps.

paho's own network thread reads one packet per `select` with three `recv` calls (its type,
its length, its body) and hands the GIL back and forth with the event loop for each; a
gateway draining a backlog spent more time on that than on its readings. Here paho runs in
its documented external-loop mode (`loop_read`, `loop_write`, `loop_misc`, the
`on_socket_*` callbacks) on the event loop's thread, and its socket is read through
`BufferedSocket`: one `recv` of up to `READ` bytes, which paho's packet reader then takes
apart without a system call, every buffered packet in one go. paho still does all of MQTT:
the session, subscriptions, keepalive, TLS and every packet's decoding.

`BufferedClient` is the one place that reaches into paho for it: `_create_socket` (the pinned
paho-mqtt's factory of the connection's socket) and `_handle_on_message`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

__all__ = ["READ", "BufferedClient", "BufferedSocket", "LoopLink"]

log = logging.getLogger("husvakt.gateway.mqtt")

#: Bytes read from the socket at once (some thousands of sensor messages).
READ = 256 * 1024


class BufferedSocket:
    """A connection's socket whose `recv` serves what one large read brought; everything
    else is the socket's own. `pending` says how much is buffered, so that the reader drains
    it without waiting for the socket to be readable again. Over TLS a read returns one
    record (at most 16 kB) whole, so TLS never holds decrypted bytes back from it."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._data = b""
        self._at = 0

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes: buffered ones, else those of one read of the socket (which
        raises as the socket does when it has none)."""
        at, data = self._at, self._data
        if at >= len(data):
            data = self._sock.recv(READ)
            self._data, at = data, 0
        self._at = at + size
        return data[at : at + size]

    def pending(self) -> int:
        return max(0, len(self._data) - self._at)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferedClient(mqtt.Client):
    """A paho client whose connections are read through `BufferedSocket`, and which hands
    every message to `on_message` (paho's own first walks a tree of the topic filters of
    `message_callback_add`, which this client does not take, decoding the topic for it)."""

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        on_message = self._on_message
        if on_message is not None:
            on_message(self, self._userdata, message)

    def message_callback_add(self, sub: str, callback: Any) -> None:
        raise NotImplementedError("every message goes to on_message")


class LoopLink:
    """Runs a paho client on the event loop: its socket's reads, writes and keepalive. After
    each read every packet already buffered is handled, then `on_data` is called once.
    `lost` is set when the connection goes (paho's `on_disconnect`, which the caller passes
    on to `disconnected`), and `why` says why."""

    def __init__(
        self,
        client: mqtt.Client,
        loop: asyncio.AbstractEventLoop,
        on_data: Callable[[], None],
    ) -> None:
        self._client = client
        self._loop = loop
        self._on_data = on_data
        self._thread = threading.get_ident()
        self._fd: int | None = None
        self.lost = asyncio.Event()
        self.why = "connection ended"
        client.on_socket_close = self._closed
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._no_write

    async def connect(self) -> None:
        """(Re)connect (in a worker thread: a TCP connect and a TLS handshake block) and start
        reading; raises `OSError` when the broker cannot be reached."""
        self.lost.clear()
        await asyncio.to_thread(self._client.reconnect)
        sock = self._client.socket()
        if sock is None:
            raise ConnectionError("the connection closed at once")
        self._fd = sock.fileno()
        self._loop.add_reader(self._fd, self._readable)
        if self._client.want_write():
            self._loop.add_writer(self._fd, self._writable)

    def disconnected(self, why: str) -> None:
        """The connection has gone (paho's `on_disconnect`), for the reason `why`."""
        self.why = why
        self._soon(self.lost.set)

    async def keepalive(self) -> None:
        """paho's timed work (PINGREQ, a PINGRESP that never came), every second."""
        while True:
            await asyncio.sleep(1.0)
            if self._fd is not None:
                self._client.loop_misc()

    def close(self) -> None:
        """Write what waits (acknowledgements, a DISCONNECT) and stop reading."""
        if self._client.socket() is not None:
            self._client.loop_write()
        self._detach()

    def _readable(self) -> None:
        client = self._client
        sock: Any = client.socket()  # a BufferedSocket
        try:
            client.loop_read()
            while sock is not None and sock.pending() and client.socket() is sock:
                client.loop_read()
        except Exception:  # paho's state is unknown: start the connection afresh
            log.exception("reading from the broker failed; reconnecting")
            self._detach()
            client.disconnect()
            self.disconnected("reading from the broker failed")
        self._on_data()

    def _writable(self) -> None:
        self._client.loop_write()

    def _want_write(self, _client: Any, _userdata: Any, _sock: Any) -> None:
        self._soon(self._add_writer)

    def _add_writer(self) -> None:
        if self._fd is not None:
            self._loop.add_writer(self._fd, self._writable)

    def _no_write(self, _client: Any, _userdata: Any, _sock: Any) -> None:
        self._soon(self._remove_writer)

    def _remove_writer(self) -> None:
        if self._fd is not None:
            self._loop.remove_writer(self._fd)

    def _closed(self, _client: Any, _userdata: Any, _sock: Any) -> None:
        self._soon(self._detach)

    def _detach(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._fd = None

    def _soon(self, call: Callable[[], None]) -> None:
        """`call` now on the event loop's thread, else scheduled there (paho calls back from
        the thread that connects)."""
        if threading.get_ident() == self._thread:
            call()
        else:
            self._loop.call_soon_threadsafe(call)
