GET /v1/stream?from=earliest&service=api&level=error&format=json HTTP/1.1
Host: 127.0.0.1:9090
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
Authorization: Bearer rs_fuzzread

ÅÖigohnâÑqkmcàÖÍa}d