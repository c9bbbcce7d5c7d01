#!/usr/bin/env python3
"""A scripted MCP server for the tests: stdio, newline-delimited JSON-RPC 2.0.

Everything it receives is appended to $FAKE_MCP_RECORD (one JSON object a line, plus
{"event": ...} lines for what it did), so a test can wait for what reached the server.

Environment:
  FAKE_MCP_RECORD      file to record into (required)
  FAKE_MCP_VERSION     protocol version to answer initialize with (default: the one asked)
  FAKE_MCP_PAGE        tools per tools/list page (default 2)
  FAKE_MCP_NO_INIT     "1": never answer initialize
  FAKE_MCP_IGNORE_EOF  "1": keep running after stdin closes, with a child in the group
  FAKE_MCP_CRASH_FILE  if this file exists at start, the crash tool exits; else it answers

Tools: echo, fail, slow, crash, media, grow (adds "extra" and sends list_changed), big.
"""
import json
import os
import subprocess
import sys
import threading
import time

RECORD = os.environ["FAKE_MCP_RECORD"]
out_lock = threading.Lock()
rec_lock = threading.Lock()
cancelled = {}
grown = False
next_id = [1000]


def record(obj):
    with rec_lock:
        with open(RECORD, "a") as f:
            f.write(json.dumps(obj) + "\n")
            f.flush()


def send(obj):
    with out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def result(id_, res):
    send({"jsonrpc": "2.0", "id": id_, "result": res})


def text(t, is_error=False):
    return {"content": [{"type": "text", "text": t}], "isError": is_error}


def tools():
    schema = {"type": "object", "properties": {"text": {"type": "string"}}}
    listed = [
        {"name": "echo", "description": "Echoes its text.", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
        {"name": "fail", "description": "Always fails.", "inputSchema": {"type": "object"}},
        {"name": "slow", "description": "Sleeps.", "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"}}}},
        {"name": "crash", "description": "Exits mid-call.", "inputSchema": {"type": "object"}},
        {"name": "media", "description": "Returns an image and resources.", "inputSchema": {"type": "object"}},
        {"name": "grow", "description": "Adds a tool.", "inputSchema": {"type": "object"}},
        {"name": "big", "description": "Returns a lot of text.", "inputSchema": schema},
    ]
    if grown:
        listed.append({"name": "extra", "description": "Appeared later.", "inputSchema": {"type": "object"}})
    return listed


def call(id_, name, args):
    global grown
    if name == "echo":
        result(id_, text("echo: " + str(args.get("text", ""))))
    elif name == "fail":
        result(id_, text("it broke on purpose", True))
    elif name == "slow":
        record({"event": "slow_started", "id": id_})
        end = time.time() + float(args.get("seconds", 30))
        while time.time() < end:
            if cancelled.get(id_):
                record({"event": "slow_cancelled", "id": id_})
                return
            time.sleep(0.02)
        result(id_, text("slept"))
    elif name == "crash":
        crash_file = os.environ.get("FAKE_MCP_CRASH_FILE")
        if crash_file and os.path.exists(crash_file):
            os.remove(crash_file)
            record({"event": "crashing"})
            os._exit(3)
        result(id_, text("did not crash"))
    elif name == "media":
        result(id_, {
            "content": [
                {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
                {"type": "resource_link", "uri": "file:///notes.txt", "name": "notes.txt", "mimeType": "text/plain"},
                {"type": "resource", "resource": {"uri": "file:///inline.txt", "mimeType": "text/plain", "text": "inline text"}},
            ],
            "structuredContent": {"answer": 42},
        })
    elif name == "grow":
        grown = True
        send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        result(id_, text("grown"))
    elif name == "big":
        result(id_, text("x" * 100000))
    elif name == "extra":
        result(id_, text("extra works"))
    else:
        send({"jsonrpc": "2.0", "id": id_, "error": {"code": -32602, "message": "unknown tool " + name}})


def main():
    record({"event": "start", "pid": os.getpid()})
    if os.environ.get("FAKE_MCP_IGNORE_EOF") == "1":
        child = subprocess.Popen(["sleep", "1000"])
        record({"event": "child", "pid": child.pid})
    page = int(os.environ.get("FAKE_MCP_PAGE", "2"))
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        msg = json.loads(line)
        record(msg)
        method = msg.get("method")
        id_ = msg.get("id")
        if method is None:
            continue  # a response to one of our requests: recorded above
        if method == "initialize":
            if os.environ.get("FAKE_MCP_NO_INIT") == "1":
                continue
            version = os.environ.get("FAKE_MCP_VERSION") or msg["params"]["protocolVersion"]
            result(id_, {
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": "fake-mcp", "version": "1.0"},
            })
        elif method == "notifications/initialized":
            # Ask the client something it must answer (ping) and something it must refuse.
            next_id[0] += 1
            send({"jsonrpc": "2.0", "id": next_id[0], "method": "ping"})
            next_id[0] += 1
            send({"jsonrpc": "2.0", "id": next_id[0], "method": "sampling/createMessage", "params": {}})
            sys.stderr.write("fake-mcp: initialized\n")
            sys.stderr.flush()
        elif method == "notifications/cancelled":
            cancelled[msg["params"]["requestId"]] = True
        elif method == "ping":
            result(id_, {})
        elif method == "tools/list":
            all_tools = tools()
            start = int((msg.get("params") or {}).get("cursor") or 0)
            res = {"tools": all_tools[start:start + page]}
            if start + page < len(all_tools):
                res["nextCursor"] = str(start + page)
            result(id_, res)
        elif method == "tools/call":
            p = msg["params"]
            threading.Thread(target=call, args=(id_, p["name"], p.get("arguments") or {}), daemon=True).start()
        elif id_ is not None:
            send({"jsonrpc": "2.0", "id": id_, "error": {"code": -32601, "message": "method not found"}})
    record({"event": "eof"})
    if os.environ.get("FAKE_MCP_IGNORE_EOF") == "1":
        while True:
            time.sleep(1)


if __name__ == "__main__":
    main()
