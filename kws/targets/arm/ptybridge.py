"""A pty for a byte stream socket: the simulated board's UART, as QEMU offers it on a Unix
socket, becomes a tty path that kws.link opens like a serial port (and a FaultProxy can sit on).

QEMU's own `-serial pty` polls once a second for a reader while none is connected and holds
the guest's input back meanwhile, so the first request after a start waits up to 1 s; a
socket chardev with `wait=on` instead keeps the machine stopped until the bridge connects.

    bridge = PtyBridge(sock).start()    # bridge.port: "/dev/pts/N"
    ...
    bridge.close()
"""

from __future__ import annotations

import os
import select
import socket
import threading
import tty


class PtyBridge:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._master, self._slave = os.openpty()   # the slave stays open: no EIO when the
        tty.setraw(self._slave)                    # host closes and reopens the port
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"pty-bridge {self.port}",
                                        daemon=True)
        self.closed_by_peer = False

    def start(self) -> "PtyBridge":
        self._thread.start()
        return self

    def _run(self) -> None:
        sock_fd = self.sock.fileno()
        try:
            while True:
                ready = select.select([sock_fd, self._master, self._wake_r], [], [])[0]
                if self._wake_r in ready:
                    return
                if sock_fd in ready:
                    data = self.sock.recv(4096)
                    if not data:               # QEMU exited
                        self.closed_by_peer = True
                        return
                    _write_all(self._master, data)
                if self._master in ready:
                    try:
                        data = os.read(self._master, 4096)
                    except OSError:            # no slave open: cannot happen, we hold one
                        continue
                    self.sock.sendall(data)
        except OSError:
            self.closed_by_peer = True

    def close(self) -> None:
        if self._thread.is_alive():
            os.write(self._wake_w, b"x")
            self._thread.join(5)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.sock.close()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]
