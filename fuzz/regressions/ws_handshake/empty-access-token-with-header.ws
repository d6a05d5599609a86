GET /v1/stream?stream=other&partition=000000000000000000000000001&since=1765000001&until=1765000003&access_token= HTTP/1.1
Host: 120.1:9090
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
Authorization: Bearer rs_fuzzread

