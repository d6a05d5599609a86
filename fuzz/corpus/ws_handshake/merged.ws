GET /v1/stream?stream=other&from=0:0,1:0&service=api&access_token=rs_fuzzread HTTP/1.1
Host: 127.0.0.1:9090
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13

ÅÇik