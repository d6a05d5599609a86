GET /v1/stream HTTP/1.1
Host: 127.0.0.1:9090
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: short==
Sec-WebSocket-Version: 13

