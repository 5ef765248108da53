"""The control plane's floor: a bare grpcio server answering chosen RPC paths
with fixed serialized responses, whatever the request.

It runs in its own process so that it does not share the benchmark's GIL,
serves plaintext or, given a certificate and its key, TLS, prints
`PORT=<n>` once it listens on 127.0.0.1, and serves until its standard input
closes.

Usage: python benchmarks/bare_server.py [--tls-cert PEM --tls-key PEM]
    /pkg.Service/Method=RESPONSE_FILE ...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

# grpc's classes are generic only in their type stubs.
if TYPE_CHECKING:
    GenericHandler = grpc.GenericRpcHandler[bytes, bytes]
else:
    GenericHandler = grpc.GenericRpcHandler

# As many handler threads as the suite's server, so both queue calls alike.
WORKERS = 32


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "answers",
        nargs="+",
        metavar="METHOD=FILE",
        help="an RPC path and the file holding its serialized response",
    )
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate to serve TLS")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    responses = {}
    for answer in args.answers:
        method, separator, path = answer.partition("=")
        if not separator or not method.startswith("/"):
            parser.error(f"answer {answer!r}: must be /package.Service/Method=FILE")
        responses[method] = Path(path).read_bytes()

    server = grpc.server(ThreadPoolExecutor(max_workers=WORKERS))
    server.add_generic_rpc_handlers([FixedAnswers(responses)])
    if args.tls_cert is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        credentials = grpc.ssl_server_credentials(
            [(args.tls_key.read_bytes(), args.tls_cert.read_bytes())]
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    print(f"PORT={port}", flush=True)
    sys.stdin.read()
    server.stop(grace=None)
    return 0


class FixedAnswers(GenericHandler):
    """Answers each known method with its bytes, leaving requests unparsed."""

    def __init__(self, responses: Mapping[str, bytes]) -> None:
        self._handlers = {
            method: grpc.unary_unary_rpc_method_handler(_answer_with(response))
            for method, response in responses.items()
        }

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        return self._handlers.get(handler_call_details.method)


def _answer_with(response: bytes) -> Callable[[bytes, grpc.ServicerContext], bytes]:
    def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
        return response

    return answer


if __name__ == "__main__":
    sys.exit(main())
