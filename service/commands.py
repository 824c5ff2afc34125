"""Subcommands of `berth` for this package (registered by service.cli): `berth serve`."""

from __future__ import annotations

import argparse
import sys
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `berth serve`; every option is also a BERTH_* setting (the option wins)."""
    serve = subparsers.add_parser("serve", help="serve every bundle in the models directory over HTTP")
    serve.add_argument("--host", help="bind address (BERTH_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (BERTH_PORT, default 8000)")
    serve.add_argument("--models-dir", help="directory of bundles (BERTH_MODELS_DIR, default models)")
    serve.add_argument("--provider", choices=["auto", "cpu", "cuda", "tensorrt"], help="BERTH_PROVIDER")
    serve.add_argument("--precision", choices=["auto", "fp32", "int8", "fp16"], help="BERTH_PRECISION")
    serve.add_argument("--intra-op-threads", type=int, help="ORT threads per batch (BERTH_INTRA_OP_THREADS)")
    serve.add_argument("--concurrent-batches", type=int,
                       help="batches one model runs at once (BERTH_CONCURRENT_BATCHES)")
    serve.add_argument("--max-batch-tokens", type=int, help="BERTH_MAX_BATCH_TOKENS")
    serve.add_argument("--max-batch-size", type=int, help="BERTH_MAX_BATCH_SIZE")
    serve.add_argument("--max-wait-ms", type=float, help="BERTH_MAX_WAIT_MS")
    serve.add_argument("--max-queue-tokens", type=int, help="BERTH_MAX_QUEUE_TOKENS")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="BERTH_LOG_LEVEL")
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from service.app import begin_shutdown, create_app
    from service.settings import SettingsError, load_settings

    try:
        settings = load_settings(
            host=args.host,
            port=args.port,
            models_dir=args.models_dir,
            provider=args.provider,
            precision=args.precision,
            intra_op_threads=args.intra_op_threads,
            concurrent_batches=args.concurrent_batches,
            max_batch_tokens=args.max_batch_tokens,
            max_batch_size=args.max_batch_size,
            max_wait_ms=args.max_wait_ms,
            max_queue_tokens=args.max_queue_tokens,
            log_level=args.log_level,
        )
    except SettingsError as exc:
        print(f"berth serve: {exc}", file=sys.stderr)
        return 2
    # JSON lines: one object per line on stderr, from our loggers and uvicorn's.
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr, format="%(message)s")
    app = create_app(settings)

    class Server(uvicorn.Server):
        """uvicorn, with a drain before the listening socket closes.

        First SIGTERM/SIGINT: /readyz answers 503 at once and new task requests get 503 over the
        still-open socket, so probes and clients see the state instead of a refused connection.
        uvicorn is told to exit (close the socket, then wait for connections) once every accepted
        request has finished and `shutdown_grace_s` has passed, or after `request_timeout_s`.
        A second signal exits at once: no more waiting for connections, requests or the
        batchers, and the process ends killed by that signal (it did not drain).
        """

        drain_from: float | None = None

        def handle_exit(self, sig: int, frame: object) -> None:
            if self.drain_from is None:
                self.drain_from = time.monotonic()
                begin_shutdown(app)
                return
            # A second signal. uvicorn on its own forces only on a repeated SIGINT and would wait
            # out timeout_graceful_shutdown on SIGTERM. The signal stays captured, so uvicorn
            # re-raises it on the way out and the exit status says the stop was forced.
            super().handle_exit(sig, frame)
            self.should_exit = self.force_exit = True

        async def on_tick(self, counter: int) -> bool:
            if self.drain_from is not None and not self.should_exit:
                waited = time.monotonic() - self.drain_from
                drained = app.state.berth.in_flight == 0 and waited >= settings.shutdown_grace_s
                if drained or waited >= max(settings.shutdown_grace_s, settings.request_timeout_s):
                    self.should_exit = True
            return await super().on_tick(counter)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=settings.request_timeout_s,
    )
    Server(config).run()
    return 0
