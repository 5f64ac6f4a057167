#!/usr/bin/python3
"""standin.py answers for one dev cloud server on its fixed IPs, inside the data
plane's namespace: test infrastructure standing in for the guest (the fake driver has
none). Started by the dev cloud's Nova driver when the server is ACTIVE, stopped when
it is SHUTOFF or deleted.

On every --http port it serves HTTP/1.1 (keep-alive): any path answers 200 with a JSON
body naming the server and the client — the peer, and the client address a PROXY v1
or v2 header carried, if one came. /healthz answers "ok"; ?delay_ms=N answers after
N ms (a slow request, to watch a drain let it finish). On every --tcp port it writes
the same JSON as one line, then echoes lines.

--proxy required refuses a connection that does not begin with a PROXY header: it is
closed without an answer, as nginx does with `listen ... proxy_protocol`. --proxy
optional (the default) takes the header when it comes. A v2 LOCAL header (haproxy's
health checks) is taken and carries no client.
"""
import argparse
import asyncio
import ipaddress
import json
import os
import signal
import struct
import sys
import time

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


class BadHeader(Exception):
    pass


async def read_proxy_header(reader):
    """Reads a PROXY v1/v2 header if the stream starts with one.

    Returns (found, client, leftover): client is "ip:port" or None (LOCAL, UNKNOWN).
    """
    first = await reader.read(1)
    if not first:
        return False, None, b""
    if first == b"P":
        line = first + await reader.readuntil(b"\r\n")
        if not line.startswith(b"PROXY "):
            return False, None, line
        parts = line[:-2].decode("ascii", "replace").split(" ")
        if len(line) > 107 or len(parts) < 2:
            raise BadHeader("PROXY v1 line malformed")
        if parts[1] == "UNKNOWN":
            return True, None, b""
        if parts[1] not in ("TCP4", "TCP6") or len(parts) != 6:
            raise BadHeader("PROXY v1 line malformed")
        return True, "%s:%s" % (parts[2], parts[4]), b""
    if first == b"\r":
        head = first + await reader.readexactly(15)
        if head[:12] != V2_SIG:
            return False, None, head
        ver_cmd, fam, length = head[12], head[13], struct.unpack("!H", head[14:16])[0]
        body = await reader.readexactly(length)
        if ver_cmd >> 4 != 2:
            raise BadHeader("PROXY v2 version %d" % (ver_cmd >> 4))
        if ver_cmd & 0xF == 0:  # LOCAL: a health check of the balancer itself
            return True, None, b""
        if fam == 0x11 and length >= 12:
            src = ipaddress.IPv4Address(body[0:4])
            sport = struct.unpack("!H", body[8:10])[0]
            return True, "%s:%d" % (src, sport), b""
        if fam == 0x21 and length >= 36:
            src = ipaddress.IPv6Address(body[0:16])
            sport = struct.unpack("!H", body[32:34])[0]
            return True, "[%s]:%d" % (src, sport), b""
        return True, None, b""
    return False, None, first


class Standin:
    def __init__(self, a):
        self.a = a
        self.stats = {"connections": 0, "with_proxy": 0, "refused_no_proxy": 0, "requests": 0,
                      "started": time.time()}

    def identity(self, local, peer, proxy_found, client):
        return {"server": self.a.name, "server_id": self.a.id, "address": local,
                "peer": peer, "proxy": proxy_found, "client": client or peer}

    async def handle(self, reader, writer, http):
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        peer_s = "%s:%d" % (peer[0], peer[1]) if peer else None
        local_s = "%s:%d" % (local[0], local[1]) if local else None
        self.stats["connections"] += 1
        try:
            try:
                found, client, leftover = await asyncio.wait_for(read_proxy_header(reader), 30)
            except (BadHeader, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
                print("%s: closed: %s" % (peer_s, e), flush=True)
                return
            except asyncio.TimeoutError:
                return
            if not found and self.a.proxy == "required":
                # nginx: "broken header" — closed, nothing answered.
                self.stats["refused_no_proxy"] += 1
                return
            if found:
                self.stats["with_proxy"] += 1
            ident = self.identity(local_s, peer_s, found, client)
            if http:
                await self.serve_http(reader, writer, leftover, ident)
            else:
                await self.serve_tcp(reader, writer, leftover, ident)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the peer may be gone already
                pass

    async def serve_http(self, reader, writer, leftover, ident):
        buf = leftover
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                buf += chunk
                if len(buf) > 65536:
                    writer.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            try:
                method, target, version = lines[0].split(" ")
            except ValueError:
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            headers = {}
            for h in lines[1:]:
                k, _, v = h.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0") or 0)
            while len(buf) < n:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                buf += chunk
            buf = buf[n:]
            self.stats["requests"] += 1
            path, _, query = target.partition("?")
            delay = 0
            for kv in query.split("&"):
                k, _, v = kv.partition("=")
                if k == "delay_ms" and v.isdigit():
                    delay = min(int(v), 60000)
            if delay:
                await asyncio.sleep(delay / 1000)
            if path == "/healthz":
                body, ctype = b"ok\n", "text/plain"
            elif path == "/stats":
                body, ctype = (json.dumps(self.stats) + "\n").encode(), "application/json"
            else:
                body, ctype = (json.dumps(dict(ident, path=path, xff=headers.get("x-forwarded-for"))) + "\n").encode(), "application/json"
            close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            writer.write(("HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\nX-Hikkoshi-Server: %s\r\n%s\r\n"
                          % (ctype, len(body), self.a.name, "Connection: close\r\n" if close else "")).encode() + body)
            await writer.drain()
            if close:
                return

    async def serve_tcp(self, reader, writer, leftover, ident):
        writer.write((json.dumps(ident) + "\n").encode())
        if leftover:
            writer.write(leftover)
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                return
            writer.write(line)
            await writer.drain()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--addr", action="append", required=True)
    ap.add_argument("--http", default="80,8080")
    ap.add_argument("--tcp", default="")
    ap.add_argument("--proxy", choices=["optional", "required"], default="optional")
    a = ap.parse_args()
    s = Standin(a)
    servers = []
    for addr in a.addr:
        for ports, http in ((a.http, True), (a.tcp, False)):
            for p in filter(None, ports.split(",")):
                srv = await asyncio.start_server(lambda r, w, http=http: s.handle(r, w, http), addr, int(p),
                                                 reuse_address=True, backlog=1024)
                servers.append(srv)
    print("standin %s (%s) on %s http %s tcp %s proxy %s" % (a.name, a.id, a.addr, a.http, a.tcp or "-", a.proxy),
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for srv in servers:
        srv.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except OSError as e:
        print("standin: %s" % e, file=sys.stderr, flush=True)
        sys.exit(1)
    os._exit(0)
