"""Run one job on a `sagvideo ui` server from another machine (or process), through its API endpoint.

`python -m sagvideo.ui.client http://HOST:7860/ in.mp4 style.png --prompt "..." --set sampling.steps=10`
prints the result's path (downloaded by gradio_client); a failed job exits 2 with the page's message.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sagvideo.ui.client", description=__doc__.splitlines()[0])
    p.add_argument("url", help="the page's address, e.g. http://127.0.0.1:7860/")
    p.add_argument("video")
    p.add_argument("style")
    p.add_argument("--prompt", default="")
    p.add_argument("--config", help="a config the page offers (default: the page's)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="advanced settings for this job")
    p.add_argument("--auth", metavar="USER:PASSWORD")
    args = p.parse_args(argv)
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    client = Client(args.url, auth=auth, verbose=False)
    extra = {"config": args.config} if args.config else {}
    try:
        status, *_, video, _, _, _ = client.predict(video=handle_file(args.video), style=handle_file(args.style),
                                                    prompt=args.prompt, advanced="\n".join(args.set),
                                                    api_name="/stylize", **extra)
    except AppError as exc:
        print(f"sagvideo: error: {exc}", file=sys.stderr)
        return 2
    print(f"{status}\n{video}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
