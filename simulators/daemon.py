"""Entry point of a detached plant process (started by `aiotlab plant up --detach`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from .launch import serve
from .runtime import PlantStartError
from .yamlconf import ConfigError


def main() -> int:
    parser = argparse.ArgumentParser(prog="aiotlab-plant")
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--secret-stdin", action="store_true", help="read the exam secret from the first stdin line")
    args = parser.parse_args()
    os.umask(0o077)  # truth, logs and configs are private to the plant's user
    if args.secret_stdin:  # the secret never sits in this process's environment (nor its children's: mosquitto)
        from .params import set_exam_secret

        set_exam_secret(sys.stdin.readline().rstrip("\n"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("asyncua", "aiohttp.access", "transitions", "amqtt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        asyncio.run(serve(args.candidate, args.seed))
    except (PlantStartError, ConfigError, ValueError) as exc:
        print(f"plant failed to start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
