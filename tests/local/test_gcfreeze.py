"""The moto server's collector tuning (local/gcfreeze.py): survivors of a full collection are frozen, a garbage
cycle among them is still collected after the next thaw, and the switch turns it all off. Each case runs in a
fresh interpreter: freezing is process-wide and must not change this test process's collector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from local import gcfreeze

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, **env: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_full_collections_freeze_their_survivors_and_a_frozen_garbage_cycle_is_freed_after_the_thaw() -> None:
    seen = run(
        """
        import gc, json, weakref
        from local import gcfreeze

        class Node:
            pass

        callback = gcfreeze.install(thaw_every=3)
        frozen_at_install = gc.get_freeze_count()
        node = Node()
        node.me = node  # a cycle: only the cyclic collector can free it
        ref = weakref.ref(node)
        gc.collect()  # full collection 1: the node survives, and is frozen with the rest
        frozen_after_first = gc.get_freeze_count()
        node_frozen = gc.is_tracked(node) and ref() is not None
        del node
        gc.collect()  # 2: the node is garbage now, but frozen: not walked, not freed
        alive_while_frozen = ref() is not None
        gc.collect()  # 3: the third full collection thaws everything after it runs
        frozen_after_thaw = gc.get_freeze_count()
        gc.collect()  # 4: walks the whole heap again: the cycle is freed, the survivors frozen again
        print(json.dumps({
            "frozen_at_install": frozen_at_install,
            "frozen_after_first": frozen_after_first,
            "node_frozen": node_frozen,
            "alive_while_frozen": alive_while_frozen,
            "frozen_after_thaw": frozen_after_thaw,
            "freed_after_thaw": ref() is None,
            "frozen_at_end": gc.get_freeze_count(),
            "full_collections": callback.full_collections,
            "thawed": callback.thawed,
        }))
        """
    )
    assert seen["frozen_at_install"] > 1000  # the imported modules, frozen at start
    assert seen["frozen_after_first"] >= seen["frozen_at_install"]
    assert seen["node_frozen"] is True
    assert seen["alive_while_frozen"] is True  # what freezing costs: a frozen cycle waits for the thaw
    assert seen["frozen_after_thaw"] == 0
    assert seen["freed_after_thaw"] is True
    assert seen["frozen_at_end"] > 1000
    assert seen["full_collections"] == 4
    assert seen["thawed"] == 1


def test_young_collections_freeze_nothing() -> None:
    seen = run(
        """
        import gc, json
        from local import gcfreeze

        callback = gcfreeze.install()
        gc.unfreeze()
        gc.collect(0)
        gc.collect(1)
        print(json.dumps({"frozen": gc.get_freeze_count(), "full": callback.full_collections}))
        """
    )
    assert seen == {"frozen": 0, "full": 0}


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_the_switch_leaves_the_collector_as_cpython_sets_it(value: str) -> None:
    seen = run(
        """
        import gc, json
        from local import gcfreeze

        before = len(gc.callbacks)
        callback = gcfreeze.install()
        gc.collect()
        print(json.dumps({"callback": callback is None, "added": len(gc.callbacks) - before,
                          "frozen": gc.get_freeze_count()}))
        """,
        SEGSCALE_MOTO_GC_FREEZE=value,
    )
    assert seen == {"callback": True, "added": 0, "frozen": 0}


def test_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gcfreeze.ENV, raising=False)
    assert gcfreeze.enabled()
    monkeypatch.setenv(gcfreeze.ENV, "0")
    assert not gcfreeze.enabled()


def test_a_moto_server_process_answers_with_its_collector_frozen() -> None:
    """``python -m local.motoserver`` installs the tuning and still serves: many writes (enough allocations for
    full collections) and a read of every one of them."""
    seen = run(
        """
        import json, os, threading, gc
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        import boto3
        from local import motoserver
        from local.procs import free_port, wait_until
        import urllib.request

        port = free_port()
        threading.Thread(target=motoserver.main, args=(["-p", str(port)],), daemon=True).start()
        url = f"http://127.0.0.1:{port}"

        def ready():
            try:
                return urllib.request.urlopen(url + "/moto-api/").status == 200
            except OSError:
                return False

        wait_until(ready, timeout_s=30, what="moto")
        ddb = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1")
        ddb.create_table(TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
        for i in range(0, 3000, 25):
            ddb.batch_write_item(RequestItems={"t": [
                {"PutRequest": {"Item": {"pk": {"S": f"k{j}"}, "n": {"N": str(j)}, "m": {"M": {"a": {"S": "x"}}}}}}
                for j in range(i, i + 25)]})
        count = sum(page["Count"] for page in ddb.get_paginator("scan").paginate(TableName="t"))
        callbacks = [c for c in gc.callbacks if type(c).__name__ == "FreezeAfterFullCollections"]
        print(json.dumps({"count": count, "installed": len(callbacks),
                          "full": callbacks[0].full_collections if callbacks else -1,
                          "frozen": gc.get_freeze_count()}))
        """
    )
    assert seen["count"] == 3000
    assert seen["installed"] == 1
    assert seen["full"] >= 1
    assert seen["frozen"] > 0
