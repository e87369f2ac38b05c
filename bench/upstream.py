"""A fake OpenAI upstream for benchmarks: answers at once, on raw asyncio + httptools, so
that what the benchmark measures is the gateway, not its fake.

    python bench/upstream.py PORT

POST .../chat/completions answers JSON, or SSE when the body asks to stream. Under /idle/
a stream sends one chunk a second for 20 s (the open-streams case: many streams open at
once, each mostly waiting). A request asking Connection: close is answered and closed.
"""

import asyncio
import sys

import httptools
import orjson

COMPLETION = orjson.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the bench upstream."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
})


def _chunk(delta: dict, finish=None, usage=None) -> bytes:
    body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-mini",
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


WORDS = ["Hello", " from", " the", " bench", " upstream", "."]
STREAM_EVENTS = (
    [_chunk({"role": "assistant", "content": ""})]
    + [_chunk({"content": w}) for w in WORDS]
    + [_chunk({}, finish="stop"), _chunk({}, usage={"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}),
       b"data: [DONE]\n\n"]
)


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
JSON_HEAD_CLOSE = JSON_HEAD[:-2] + b"connection: close\r\n\r\n"
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
FAST_STREAM = SSE_HEAD + b"".join(_chunked(e) for e in STREAM_EVENTS) + b"0\r\n\r\n"
MODELS = b'{"object":"list","data":[]}'


class Upstream(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body = []
        self.close = False  # the request said "Connection: close"

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        if name.lower() == b"connection" and value.lower() == b"close":
            self.close = True

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        url, body, close = self.url, b"".join(self.body), self.close
        self.url, self.body, self.close = b"", [], False
        if url.endswith(b"/models"):
            self.transport.write(JSON_HEAD % len(MODELS) + MODELS)
        elif b'"stream":true' not in body:
            head = JSON_HEAD_CLOSE if close else JSON_HEAD  # a client reconnects only when told
            self.transport.write(head % len(COMPLETION) + COMPLETION)
        elif url.startswith(b"/idle/"):
            asyncio.get_running_loop().create_task(self.idle_stream(1.0, 20))
            return
        else:
            self.transport.write(FAST_STREAM)
        if close:
            self.transport.close()

    async def idle_stream(self, interval: float, chunks: int):
        self.transport.write(SSE_HEAD + _chunked(STREAM_EVENTS[0]))
        for i in range(chunks):
            await asyncio.sleep(interval)
            if self.transport.is_closing():
                return
            self.transport.write(_chunked(_chunk({"content": f" w{i}"})))
        for event in STREAM_EVENTS[-3:]:
            self.transport.write(_chunked(event))
        self.transport.write(b"0\r\n\r\n")


async def main(port: int):
    server = await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1])))
