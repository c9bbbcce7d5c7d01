#!/usr/bin/env python3
"""A fake OpenAI-compatible Chat Completions server for the benchmarks (stdlib only).

Streams SSE like the real API. Two behaviours:
  --mode tool    a request without a tool result gets one memory_search tool call,
                 a request carrying a tool result gets a short text answer (one tool
                 round trip per turn, answered instantly);
  --mode stream  every request gets --deltas text deltas, one every --cadence-ms
                 (a request for the model "short" gets 3, for time-to-first-event runs).
Prints "ready <port>" on stdout once listening.
"""
import argparse
import json
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The default backlog of 5 drops connections when 50 streams open at once.
    request_queue_size = 256


def chunk(obj):
    return ("data: " + json.dumps(obj) + "\n\n").encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Small writes must leave at once (no Nagle/delayed-ACK stalls), like a real streaming server.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send_chunked(self, payload):
        self.wfile.write(b"%X\r\n%s\r\n" % (len(payload), payload))
        self.wfile.flush()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        opts = self.server.opts
        base = {"id": "x", "object": "chat.completion.chunk", "model": "fake"}
        if opts.mode == "tool":
            has_result = any(m.get("role") == "tool" for m in body.get("messages", []))
            if has_result:
                delta = {"role": "assistant", "content": "Done."}
                finish = "stop"
            else:
                delta = {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                         "function": {"name": "memory_search", "arguments": "{\"query\": \"bench\"}"}}]}
                finish = "tool_calls"
            self.send_chunked(chunk(dict(base, choices=[{"index": 0, "delta": delta}])))
            self.send_chunked(chunk(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": finish}])))
        else:
            cadence = opts.cadence_ms / 1000.0
            start = time.perf_counter()
            count = 3 if body.get("model") == "short" else opts.deltas
            for i in range(count):
                # Absolute schedule: delta i leaves at start + i*cadence, so drift never adds up.
                wait = start + i * cadence - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                try:
                    self.send_chunked(chunk(dict(base, choices=[{"index": 0, "delta": {"content": f"t{i} "}}])))
                except (BrokenPipeError, ConnectionResetError):
                    return
            self.send_chunked(chunk(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])))
        self.send_chunked(chunk(dict(base, choices=[], usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})))
        self.send_chunked(b"data: [DONE]\n\n")
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading after [DONE]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["tool", "stream"], default="tool")
    p.add_argument("--deltas", type=int, default=500)
    p.add_argument("--cadence-ms", type=float, default=5.0)
    p.add_argument("--port", type=int, default=0)
    opts = p.parse_args()
    srv = Server(("127.0.0.1", opts.port), Handler)
    srv.opts = opts
    print("ready", srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
