"""Tests of standin.py on loopback: the PROXY v1 and v2 headers it reads, and the
connections it refuses when the header is required.

    /usr/bin/python3 -m unittest discover -s tilt/devcloud/dataplane
"""
import json
import os
import socket
import struct
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def v2(src, sport, dst, dport, local=False):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return V2_SIG + bytes([0x20 if local else 0x21, 0x11]) + struct.pack("!H", len(body)) + body


GET = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


class StandinTest(unittest.TestCase):
    def start(self, proxy):
        port = free_port()
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "standin.py"), "--name", "web-t", "--id", "id-t",
                              "--addr", "127.0.0.1", "--http", str(port), "--proxy", proxy],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (p.terminate(), p.wait(5), p.stdout.close()))
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return port
            except OSError:
                time.sleep(0.05)
        self.fail("the stand-in did not listen")

    def ask(self, port, data):
        with socket.create_connection(("127.0.0.1", port), 5) as s:
            s.sendall(data)
            out = b""
            while True:
                b = s.recv(65536)
                if not b:
                    return out
                out += b

    def body(self, reply):
        head, _, body = reply.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), reply)
        return json.loads(body)

    def test_v2_header_names_the_client(self):
        port = self.start("required")
        got = self.body(self.ask(port, v2("100.64.0.10", 40001, "127.0.0.1", port) + GET))
        self.assertEqual(got["server"], "web-t")
        self.assertTrue(got["proxy"])
        self.assertEqual(got["client"], "100.64.0.10:40001")

    def test_v1_header_names_the_client(self):
        port = self.start("required")
        got = self.body(self.ask(port, b"PROXY TCP4 100.64.0.10 127.0.0.1 40002 %d\r\n" % port + GET))
        self.assertEqual(got["client"], "100.64.0.10:40002")

    def test_required_refuses_a_connection_without_header(self):
        port = self.start("required")
        self.assertEqual(self.ask(port, GET), b"")

    def test_local_header_is_a_health_check(self):
        port = self.start("required")
        got = self.body(self.ask(port, v2("0.0.0.0", 0, "0.0.0.0", 0, local=True) + GET))
        self.assertTrue(got["proxy"])
        self.assertTrue(got["client"].startswith("127.0.0.1:"))

    def test_optional_takes_both(self):
        port = self.start("optional")
        plain = self.body(self.ask(port, GET))
        self.assertFalse(plain["proxy"])
        with_header = self.body(self.ask(port, v2("100.64.0.10", 40003, "127.0.0.1", port) + GET))
        self.assertEqual(with_header["client"], "100.64.0.10:40003")

    def test_keep_alive_and_delay(self):
        port = self.start("optional")
        req = b"GET /a?delay_ms=50 HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        out = self.ask(port, req)
        self.assertEqual(out.count(b"HTTP/1.1 200 OK"), 2, out)
        self.assertTrue(out.endswith(b"ok\n"), out)


if __name__ == "__main__":
    unittest.main()
