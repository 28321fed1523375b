"""Entry point of a detached plant process (started by `aiotlab plant up --detach`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .launch import serve
from .runtime import PlantStartError
from .yamlconf import ConfigError


def main() -> int:
    parser = argparse.ArgumentParser(prog="aiotlab-plant")
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
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
