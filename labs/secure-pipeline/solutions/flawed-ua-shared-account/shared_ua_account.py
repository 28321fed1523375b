"""Flawed solution (secure-pipeline): the given collector, but its OPC UA session logs in with the grader's viewer
account instead of its own `collector` account (still SignAndEncrypt, still its own application certificate): a
shared account, so PLC-2's audit trail cannot tell the collector's reads from anyone else's.

Usage: shared_ua_account.py COLLECTOR [collector arguments...]
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

import asyncua

params = json.loads(Path(os.environ["AIOTLAB_LAB_PARAMS"]).read_text())
own = ("collector", str(params["ua_accounts"]["collector"]))
shared = ("grader", str(params["ua_accounts"]["grader"]))
set_user, set_password = asyncua.Client.set_user, asyncua.Client.set_password


def use_shared_user(self: asyncua.Client, username: str) -> None:
    set_user(self, shared[0] if username == own[0] else username)


def use_shared_password(self: asyncua.Client, pwd: str) -> None:
    set_password(self, shared[1] if pwd == own[1] else pwd)


asyncua.Client.set_user = use_shared_user  # type: ignore[method-assign]
asyncua.Client.set_password = use_shared_password  # type: ignore[method-assign]
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
