#!/usr/bin/python3
"""relay.py gives each HA network node of the dev cloud a RabbitMQ on its own
loopback: it listens on 127.0.0.1:PORT inside each node's network namespace and
connects every connection to 127.0.0.1:PORT in the host's namespace, where the dev
cloud's RabbitMQ listens. Test infrastructure, not product code (devcloud.sh up --ha).

The L3 and linuxbridge agents run inside the nodes (tilt/devcloud/ha.sh), whose
127.0.0.1 is their own. Both ends are loopback: nothing listens or connects beyond
it. The listening sockets are made inside the nodes (setns, bind, setns back) before
the event loop starts, the outgoing connections from the host's namespace.

    relay.py --port 5672 NETNS...
"""
import argparse
import asyncio
import ctypes
import os
import socket
import sys

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL("libc.so.6", use_errno=True)


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: " + os.strerror(e))


def listen_in(netns, port):
    """A listening socket on 127.0.0.1:port inside netns."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open("/run/netns/" + netns, os.O_RDONLY)
    try:
        setns(fd)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(128)
        s.setblocking(False)
        return s
    finally:
        setns(home)
        os.close(fd)
        os.close(home)


async def pipe(r, w):
    try:
        while True:
            b = await r.read(65536)
            if not b:
                break
            w.write(b)
            await w.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            w.close()
        except Exception:  # noqa: BLE001
            pass


def handler(port):
    async def handle(reader, writer):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, uw), pipe(ur, writer))
    return handle


async def main(socks, port):
    servers = [await asyncio.start_server(handler(port), sock=s) for s in socks]
    print("relaying 127.0.0.1:%d in %d node(s) to the host's 127.0.0.1:%d" % (port, len(servers), port), flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("netns", nargs="+")
    a = ap.parse_args()
    socks = [listen_in(n, a.port) for n in a.netns]
    try:
        asyncio.run(main(socks, a.port))
    except KeyboardInterrupt:
        sys.exit(0)
