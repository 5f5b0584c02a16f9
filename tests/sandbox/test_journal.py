"""The sandbox's journal: what it acknowledged survives a kill -9, compaction keeps the world."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import stripe

from billfold_sandbox.app import create_sandbox_app
from billfold_sandbox.state import SandboxState
from tests.sandbox_fixtures import ServedApp, start_sandbox_cli


def _client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_journal", base_addresses={"api": url}, max_network_retries=0
    )


def test_every_acknowledged_change_survives_kill_9(tmp_path: Path) -> None:
    state_file = tmp_path / "sandbox.json"
    process, url = start_sandbox_cli(
        state_file, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        client = _client(url)
        created = [
            client.v1.customers.create(params={"email": f"k{i}@example.com"}) for i in range(20)
        ]
        client.v1.customers.update(created[0].id, params={"metadata": {"kept": "yes"}})
        client.v1.customers.delete(created[1].id)
    finally:
        process.send_signal(signal.SIGKILL)  # no shutdown hook runs
        process.wait(timeout=10)

    reloaded = SandboxState(state_file)
    for customer in created[2:]:
        assert reloaded.require("customer", customer.id)["email"] == customer.email
    assert reloaded.require("customer", created[0].id)["metadata"] == {"kept": "yes"}
    assert reloaded.require("customer", created[1].id, deleted_ok=True).get("deleted") is True


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    state = SandboxState(path)
    state.insert({"id": "cus_a", "object": "customer", "email": "a@example.com"})
    state.commit()
    assert state.journal is not None
    journal = state.journal.journal_path(state.journal.generation)
    with open(journal, "a", encoding="utf-8") as out:
        out.write('{"o":[{"id":"cus_b","object":"cust')  # died inside the write
    reloaded = SandboxState(path)
    assert reloaded.require("customer", "cus_a")["email"] == "a@example.com"
    assert reloaded.get("customer", "cus_b") is None
    reloaded.insert({"id": "cus_c", "object": "customer"})
    reloaded.commit()
    assert SandboxState(path).get("customer", "cus_c") is not None


def test_compaction_keeps_the_world_and_drops_old_journals(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    state = SandboxState(path)
    state.compact_min_bytes = 2_000  # compact often
    served = ServedApp(create_sandbox_app(state))
    try:
        client = _client(served.url)
        ids = [
            client.v1.customers.create(
                params={"email": f"c{i}@example.com"}, options={"idempotency_key": f"c-{i}"}
            ).id
            for i in range(60)
        ]
        clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": 1_800_000_000})
    finally:
        served.stop()
    assert state.journal is not None
    assert len(state.journal.journals()) <= 2
    header = json.loads(path.read_text().partition("\n")[0])
    assert header["format"] == 2

    reloaded = SandboxState(path)
    assert [c["id"] for c in reloaded.all("customer")] == ids  # creation order kept
    assert reloaded.require("test_helpers.test_clock", clock.id)["frozen_time"] == 1_800_000_000
    assert any(key.endswith(":c-59") for key in reloaded.idempotency)


def test_a_format_1_state_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    old = {
        "format": 1,
        "clock_offset": 5,
        "timer_seq": 0,
        "timers": [],
        "objects": {"customer": [{"id": "cus_old", "object": "customer"}]},
        "idempotency": [],
    }
    path.write_text(json.dumps(old))
    state = SandboxState(path)
    assert state.get("customer", "cus_old") is not None
    assert state.clock_offset == 5
    state.insert({"id": "cus_new", "object": "customer"})
    state.commit()
    reloaded = SandboxState(path)
    assert reloaded.get("customer", "cus_old") is not None
    assert reloaded.get("customer", "cus_new") is not None
