#!/usr/bin/python3
"""bastion.py is the dev cloud's jump host: a SOCKS5 proxy (RFC 1928, CONNECT, no
authentication) that listens on the host's loopback and connects inside the data
plane's namespace. Test infrastructure, not product code.

SREs reach their servers' addresses from where their tools run through a jump host
(`ssh -D`, a SOCKS proxy). Hikkoshi's services run in the host's namespace, where the
dev cloud's addresses are unreachable on purpose; a health probe of a moved server
goes through this proxy (`--probe-proxy socks5://127.0.0.1:1080`), as it would go
through a bastion in production. The listening socket is made in the host's namespace
before the process enters the data plane's (setns): every connection it makes from
then on starts inside. It connects only to the dev cloud's ranges.

    bastion.py --listen 127.0.0.1:1080
"""
import argparse
import asyncio
import ctypes
import ipaddress
import os
import socket
import struct
import sys

import hikkoshi_dataplane as dp

CLONE_NEWNET = 0x40000000
ALLOWED = [ipaddress.ip_network(r) for r in dp.DEVCLOUD_RANGES]


def enter_netns():
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open("/run/netns/" + dp.NETNS, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns: " + os.strerror(e))
    finally:
        os.close(fd)


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


async def handle(reader, writer):
    def reply(code):
        writer.write(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
    try:
        ver, n = await reader.readexactly(2)
        methods = await reader.readexactly(n)
        if ver != 5 or 0 not in methods:
            writer.write(b"\x05\xff")
            return
        writer.write(b"\x05\x00")
        ver, cmd, _, atyp = await reader.readexactly(4)
        if atyp == 1:
            host = socket.inet_ntoa(await reader.readexactly(4))
        elif atyp == 3:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        else:
            reply(8)  # address type not supported
            return
        port = struct.unpack("!H", await reader.readexactly(2))[0]
        if cmd != 1:
            reply(7)  # command not supported
            return
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            reply(4)  # names are not resolved here
            return
        if not any(ip in net for net in ALLOWED):
            reply(2)  # not allowed by the ruleset: only the dev cloud's ranges
            return
        try:
            r2, w2 = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except asyncio.TimeoutError:
            reply(4)  # host unreachable
            return
        except ConnectionRefusedError:
            reply(5)
            return
        except OSError:
            reply(4)
            return
        reply(0)
        await writer.drain()
        await asyncio.gather(pipe(reader, w2), pipe(r2, writer))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001
            pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:1080")
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit("bastion: listen on loopback only")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(256)
    enter_netns()  # from here on, every socket this process makes is inside
    srv = await asyncio.start_server(handle, sock=sock)
    print("bastion: SOCKS5 on %s, connecting inside %s" % (a.listen, dp.NETNS), flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
