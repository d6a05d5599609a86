GET /v1/stream?since=1765000001&q=record HTTP/1.1
Host: 127.0.0.1:9090
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
Authorization: bearer  rs_fuzzread
Origin: http://127.0.0.1:9090

ˆ‚ê