"""A real third-party WSS client for tests/fanout_wss.rs (python `websockets`).

  wss_client.py subscribe <wss-url> <ca.pem> <count>
      Subscribes, prints "subscribed", then one JSON line {"offset", "data"} per
      record until <count> records arrived, then closes normally.
  wss_client.py peercert <host> <port> <ca.pem>
      Completes a TLS handshake (verifying against <ca.pem>) and prints the server
      certificate's commonName and serialNumber as one JSON line.
"""

import asyncio
import json
import socket
import ssl
import sys

import websockets


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    return ctx


async def subscribe(url, cafile, count):
    async with websockets.connect(url, ssl=context(cafile), max_size=None) as ws:
        print("subscribed", flush=True)
        got = 0
        while got < count:
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))
            for r in message["records"]:
                print(json.dumps({"offset": r["offset"], "data": r["data"]}), flush=True)
                got += 1


def peercert(host, port, cafile):
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context(cafile).wrap_socket(raw, server_hostname=host) as tls:
            cert = tls.getpeercert()
    subject = dict(pair[0] for pair in cert["subject"])
    print(json.dumps({"cn": subject["commonName"], "serial": cert["serialNumber"]}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "subscribe":
        asyncio.run(subscribe(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif sys.argv[1] == "peercert":
        peercert(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"unknown mode {sys.argv[1]!r}")
