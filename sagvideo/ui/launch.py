"""`sagvideo ui`: its flags, the checks before anything heavy loads, and serving the page.

Without the `ui` extra the command says how to install it and exits 2 before torch (or gradio)
is imported. It binds to 127.0.0.1 unless told otherwise; another host gets a warning, since
anyone who reaches the port can then run jobs on this machine's GPU, and `--auth` is suggested.
No share link, no analytics: the page works with no internet at all.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from ..commandline import add_config_flags
from ..errors import InputError
from . import INSTALL_HINT

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_ui_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    add_config_flags(p, " for every run from the page")
    p.add_argument("--output-dir", dest="output_dir", type=Path, default=Path("sagvideo-ui-outputs"),
                   help="where runs write their files, each under a fresh name (default ./sagvideo-ui-outputs)")
    p.add_argument("--auth", metavar="USER:PASSWORD", help="ask for this user name and password")
    p.add_argument("--max-upload-mb", dest="max_upload_mb", type=float, default=500.0,
                   help="largest upload accepted, in MB (default 500)")
    p.set_defaults(handler=cmd_ui)


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise InputError("--auth expects USER:PASSWORD, both non-empty. To fix: e.g. --auth editor:a-long-secret.")
    return user, password


def check_ui(args: argparse.Namespace) -> tuple[tuple[str, str] | None, dict]:
    """Everything that can be checked before gradio and torch load: the extra, the flags, the config."""
    if importlib.util.find_spec("gradio") is None:
        raise InputError(INSTALL_HINT)
    auth = parse_auth(args.auth)
    if not 0 < args.port < 65536:
        raise InputError(f"--port must be from 1 to 65535, got {args.port}.")
    if args.max_upload_mb <= 0:
        raise InputError(f"--max-upload-mb must be positive, got {args.max_upload_mb:g}.")
    from ..config import parse_set_items
    from .settings import PageSettings, default_choice

    sets = parse_set_items(args.set)
    PageSettings(default_choice(args.config)).config(sets)  # a bad --config or --set answers now
    out = args.output_dir.expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"--output-dir '{out}' is a file. To fix: give a folder.")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise InputError(f"cannot write to --output-dir '{out}'. To fix: give a folder you can write to.")
    return auth, sets


def host_warning(host: str, port: int, auth: tuple[str, str] | None) -> str | None:
    """The warning for an address other than this machine's own, or None."""
    if host in LOCAL_HOSTS:
        return None
    return (f"sagvideo: warning: listening on {host}: anyone who can reach port {port} on that network can use this "
            f"page and its GPU{'' if auth else '. Add --auth USER:PASSWORD to ask for a password'}.")


def cmd_ui(args: argparse.Namespace) -> int:
    auth, sets = check_ui(args)
    warning = host_warning(args.host, args.port, auth)
    if warning:
        print(warning, file=sys.stderr)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no telemetry, no version check: works offline
    from .cache import RuntimeCache
    from .jobs import JobRunner
    from .page import build_page

    runner = JobRunner(args.output_dir.expanduser(), server_sets=sets, cache=RuntimeCache(),
                       max_upload_mb=args.max_upload_mb)
    demo = build_page(runner, args.config)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, auth=auth, share=False, inbrowser=False,
                max_file_size=int(args.max_upload_mb * 2**20), allowed_paths=[str(runner.output_dir.resolve())],
                ssr_mode=False, mcp_server=False, enable_monitoring=False, show_error=False)
    return 0
