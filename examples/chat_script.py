"""A scripted chat client: connect to a chat-forward server, ask, send, say goodbye.

    muxio serve chat --port 7008                                  # in one shell
    muxio chat localhost 7008                                     # a person, in another
    python examples/chat_script.py --port 7008 --to 1 --text "hello from a script"

It prints the server's time and the client list, forwards TEXT to client ID (with --to),
then says BYE and exits 0; any error answer exits 1. `ChatClientProtocol` does the
protocol (framing, requests and their answers, heartbeats); this script only chains the
requests, each started from the answer to the previous one.
"""

from __future__ import annotations

import argparse
import sys

import muxio
from muxio.handlers.chat import (
    ChatClientHandler,
    ChatClientProtocol,
    ErrorResponse,
    HelloOk,
    ListOk,
    Message,
    TimeOk,
)


class Script(ChatClientHandler):
    """time -> list -> send (optional) -> bye, then done."""

    def __init__(self, to: int | None, text: str) -> None:
        self.to = to
        self.text = text
        self.failed = False
        self.done = False

    def ready(self, client: ChatClientProtocol, hello: HelloOk) -> None:
        print(f"connected as client {hello.client_id}")
        client.time(lambda answer: self.got_time(client, answer))

    def got_time(self, client: ChatClientProtocol, answer: Message) -> None:
        if isinstance(answer, TimeOk):
            print(f"server time: {answer.text}")
        client.list(lambda answer: self.got_list(client, answer))

    def got_list(self, client: ChatClientProtocol, answer: Message) -> None:
        if isinstance(answer, ListOk):
            print("clients:", " ".join(str(entry.client_id) for entry in answer.clients))
        if self.to is None:
            client.bye()
        else:
            client.send(self.to, self.text, lambda answer: self.sent(client, answer))

    def sent(self, client: ChatClientProtocol, answer: Message) -> None:
        if isinstance(answer, ErrorResponse):
            print(f"not delivered: {answer.description}", file=sys.stderr)
            self.failed = True
        else:
            print(f"delivered to {self.to}")
        client.bye()

    def closed(self, client: ChatClientProtocol, exc: Exception | None) -> None:
        if exc is not None:
            print(f"connection lost: {exc}", file=sys.stderr)
            self.failed = True
        self.done = True


def main() -> int:
    parser = argparse.ArgumentParser(description="a scripted chat-forward client")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7008)
    parser.add_argument("--transport", default="tcp", choices=("tcp", "kcp"))
    parser.add_argument("--to", type=int, help="client id to send TEXT to")
    parser.add_argument("--text", default="hello")
    args = parser.parse_args()
    script = Script(args.to, args.text)
    with muxio.Loop() as loop:
        client = ChatClientProtocol(loop, script)
        connecting = muxio.connect(lambda: client, args.host, args.port,
                                   transport=args.transport, loop=loop)
        loop.run_until_complete(connecting, timeout=10)
        loop.run_until(lambda: script.done, timeout=30)
    return 1 if script.failed else 0


if __name__ == "__main__":
    sys.exit(main())
