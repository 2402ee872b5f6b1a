"""relay.ledger against moto's DynamoDB (the template's idempotency table): one write per event and vendor
plus one per batch, with the same answers Powertools Idempotency's two writes per event gave."""

from __future__ import annotations

import boto3
import pytest

from relay.aws.ledger import Claim, DeliveryLedger, claim_key


class Clock:
    def __init__(self, now: float = 1_763_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table(aws_stack):
    return aws_stack.physical["IdempotencyTable"]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def writes():
    """Every DynamoDB write call made by the ledgers of a test, by operation name."""
    calls: list[str] = []
    client = boto3.client("dynamodb")
    for op in ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"):
        client.meta.events.register(f"before-call.dynamodb.{op}", lambda model, **_: calls.append(model.name))
    return client, calls


def ledger(writes, table, clock, vendor="adroll") -> DeliveryLedger:
    return DeliveryLedger(vendor, table, writes[0], clock=clock)


def test_a_delivered_event_costs_one_write_per_event_and_one_per_batch(writes, table, clock):
    a = ledger(writes, table, clock)
    batch = a.new_batch()
    assert [a.claim(f"e{i}", 30_000, batch) for i in range(100)] == [Claim.CLAIMED] * 100
    a.settle(batch, {f"e{i}": 200 for i in range(100)}, [])
    assert writes[1] == ["PutItem"] * 101
    other = a.new_batch()
    assert a.claim("e7", 30_000, other) is Claim.DUPLICATE  # a redelivery, a resend: never sent again
    assert writes[1] == ["PutItem"] * 102  # the refused conditional put; nothing else written


def test_an_unsettled_claim_is_in_flight_until_its_lease_runs_out_then_taken_over(writes, table, clock):
    a, b = ledger(writes, table, clock), ledger(writes, table, clock)
    first = a.new_batch()
    assert a.claim("e1", 10_000, first) is Claim.CLAIMED
    assert b.claim("e1", 10_000, b.new_batch()) is Claim.IN_FLIGHT
    clock.now += 11  # the first invocation died without settling
    second = b.new_batch()
    assert b.claim("e1", 10_000, second) is Claim.CLAIMED
    a.settle(first, {"e1": 200}, [])  # a late settle of the dead batch does not settle the new claim
    assert a.claim("e1", 10_000, a.new_batch()) is Claim.IN_FLIGHT
    b.settle(second, {"e1": 200}, [])
    assert a.claim("e1", 10_000, a.new_batch()) is Claim.DUPLICATE


def test_a_failed_event_is_claimed_again_and_delivered_once(writes, table, clock):
    a = ledger(writes, table, clock)
    first = a.new_batch()
    assert a.claim("ok", 30_000, first) is Claim.CLAIMED and a.claim("bad", 30_000, first) is Claim.CLAIMED
    a.settle(first, {"ok": 200}, ["bad"])
    retry = a.new_batch()
    assert a.claim("bad", 30_000, retry) is Claim.CLAIMED  # taken over at once, no lease to wait for
    assert a.claim("ok", 30_000, retry) is Claim.DUPLICATE
    a.settle(retry, {"bad": 202}, [])
    assert a.claim("bad", 30_000, a.new_batch()) is Claim.DUPLICATE
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    assert DeliveryLedger.delivered_events(items) == {("adroll", "ok"): "200", ("adroll", "bad"): "202"}


def test_a_dead_lettered_event_is_dropped_from_its_own_message_and_sent_from_any_other(writes, table, clock):
    a = ledger(writes, table, clock)
    batch = a.new_batch()
    assert a.claim("e1", 30_000, batch, message_id="m1") is Claim.CLAIMED
    a.settle(batch, {}, ["e1"])
    assert a.dead_lettered("e1", "m1", "rejected", batch=batch)
    assert a.claim("e1", 30_000, a.new_batch(), message_id="m1") is Claim.DEAD_LETTERED  # SQS redelivery
    assert a.claim("e1", 30_000, a.new_batch(), message_id="m2") is Claim.CLAIMED  # redrive / resend


def test_a_dead_letter_never_replaces_a_claim_it_does_not_hold(writes, table, clock):
    """Another message delivered the event: a copy dead-lettered afterwards (an unusable configuration moves
    whole messages, unclaimed) leaves the delivered record as it is, so that its redrive is a duplicate."""
    a = ledger(writes, table, clock)
    delivered = a.new_batch()
    assert a.claim("e1", 30_000, delivered, message_id="m1") is Claim.CLAIMED
    a.settle(delivered, {"e1": 200}, [])
    assert not a.dead_lettered("e1", "m2", "config", batch=None)
    assert a.claim("e1", 30_000, a.new_batch(), message_id="m3") is Claim.DUPLICATE


def test_vendors_have_their_own_records(writes, table, clock):
    adroll, applovin = ledger(writes, table, clock, "adroll"), ledger(writes, table, clock, "applovin")
    batch = adroll.new_batch()
    assert adroll.claim("e1", 30_000, batch) is Claim.CLAIMED
    adroll.settle(batch, {"e1": 200}, [])
    assert applovin.claim("e1", 30_000, applovin.new_batch()) is Claim.CLAIMED


def test_the_ingest_claims_a_requests_events_in_one_transaction(writes, table, clock):
    """claim_many: one TransactWriteItems of up to 100 conditional puts; a refused one (a resend) is
    decided alone and the others are claimed together again (a cancelled transaction wrote nothing)."""
    a = ledger(writes, table, clock, vendor="ingest")
    first = a.new_batch()
    assert a.claim_many([f"e{i}" for i in range(100)], 10_000, first) == {f"e{i}": Claim.CLAIMED for i in range(100)}
    assert writes[1] == ["TransactWriteItems"]
    a.settle(first, {f"e{i}": None for i in range(100)}, [])
    writes[1].clear()
    again = a.claim_many(["new1", "e5", "new2", "e9"], 10_000, a.new_batch())
    assert again == {"new1": Claim.CLAIMED, "new2": Claim.CLAIMED, "e5": Claim.DUPLICATE, "e9": Claim.DUPLICATE}
    assert writes[1] == ["TransactWriteItems", "TransactWriteItems", "PutItem", "PutItem"]
    assert a.claim_many([f"x{i}" for i in range(150)], 10_000, a.new_batch()) == {
        f"x{i}": Claim.CLAIMED for i in range(150)
    }  # 100 per transaction


def test_a_bundle_has_one_claim_and_a_redelivery_sends_only_what_was_not_delivered(writes, table, clock):
    a, b = ledger(writes, table, clock), ledger(writes, table, clock)
    events = ["e1", "e2", "e3"]
    first = a.new_batch()
    assert a.claim_bundle("b1", {"m0": events}, 10_000, first) == (Claim.CLAIMED, frozenset(events))
    assert b.claim_bundle("b1", {"m0": events}, 10_000, b.new_batch()) == (Claim.IN_FLIGHT, frozenset())
    a.dead_lettered("e3", "m1#2", "invalid")  # as the handler records a move to the DLQ, before settling
    a.settle(first, {"e1": 200}, ["e2"], moved=["e3"])  # e3 is done with
    second = b.new_batch()
    assert b.claim_bundle("b1", {"m1": events}, 10_000, second) == (Claim.CLAIMED, frozenset({"e2"}))
    # the second holder dies without settling: after its lease, what it was sending is sent again, no more
    clock.now += 11
    third = a.new_batch()
    assert a.claim_bundle("b1", {"m1": events}, 10_000, third) == (Claim.CLAIMED, frozenset({"e2"}))
    a.settle(third, {"e2": 200}, [])
    assert a.claim_bundle("b1", {"m1": events}, 10_000, a.new_batch()) == (Claim.DUPLICATE, frozenset())
    # e3's dead letter redriven (a bundle of one under b1, in a new message): it is sent, once
    fourth = a.new_batch()
    assert a.claim_bundle("b1", {"m9": ["e3"]}, 10_000, fourth) == (Claim.CLAIMED, frozenset({"e3"}))
    a.settle(fourth, {"e3": 200}, [])
    assert a.claim_bundle("b1", {"m9": ["e3"]}, 10_000, a.new_batch()) == (Claim.DUPLICATE, frozenset())
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    delivered = DeliveryLedger.delivered_events(items)
    assert {k for k in delivered} >= {("adroll", "e1"), ("adroll", "e2")}


def test_a_bundle_of_ten_costs_one_claim_and_one_batch_record(writes, table, clock):
    a = ledger(writes, table, clock)
    batch = a.new_batch()
    assert a.claim_bundle("b2", {"m0": [f"e{i}" for i in range(10)]}, 10_000, batch)[0] is Claim.CLAIMED
    a.settle(batch, {f"e{i}": 200 for i in range(10)}, [])
    assert writes[1] == ["PutItem", "PutItem"]


@pytest.mark.parametrize(
    "event_id", ["o-1001", 'quote"d', "back\\slash", "é-accent", "tab\tx", "x" * 128, " sp ", "~!@#$%^&*()"]
)
def test_claim_keys_are_powertools_keys_whatever_the_event_id(event_id):
    """The fast path for plain ids writes the very text json.dumps does (records of an upgrade stay found)."""
    import hashlib
    import json

    text = json.dumps(["applovin", event_id], sort_keys=True).encode()
    assert claim_key("applovin", event_id) == "s2s-relay.applovin#" + hashlib.md5(text).hexdigest()


def test_a_bundle_id_is_one_identity_whatever_events_each_message_carries(writes, table, clock):
    """Messages with one bundle id may carry different events (a resend regrouped at the ingest, a dead letter
    redriven as a bundle of one): the claim remembers every event of the id and what is still owed."""
    a = ledger(writes, table, clock)
    first = a.new_batch()
    assert a.claim_bundle("b1", {"m1": ["e1", "e2", "e3"]}, 30_000, first) == (Claim.CLAIMED, {"e1", "e2", "e3"})
    a.settle(first, {"e1": 200, "e3": 200}, ["e2"])  # e2 failed: owed
    second = a.new_batch()
    assert a.claim_bundle("b1", {"m2": ["e4"]}, 30_000, second) == (Claim.CLAIMED, {"e4"})  # new to the id
    a.settle(second, {"e4": 200}, [])
    assert a.claim_bundle("b1", {"m3": ["e3"]}, 30_000, a.new_batch()) == (Claim.DUPLICATE, frozenset())
    third = a.new_batch()  # the first message again: only e2, still owed, is sent
    assert a.claim_bundle("b1", {"m1": ["e1", "e2", "e3"]}, 30_000, third) == (Claim.CLAIMED, {"e2"})
    a.settle(third, {"e2": 200}, [])
    assert a.claim_bundle("b1", {"m4": ["e4", "e2", "e1"]}, 30_000, a.new_batch()) == (Claim.DUPLICATE, frozenset())


def test_released_claims_are_claimed_again_in_one_transaction(writes, table, clock):
    """The ingest releases what it claimed and could not publish: the resend's claims are one
    TransactWriteItems again, not a takeover event by event. A claim another batch holds is not released."""
    ingest = ledger(writes, table, clock, vendor="ingest")
    first = ingest.new_batch()
    assert set(ingest.claim_many(["a", "b", "c"], 10_000, first).values()) == {Claim.CLAIMED}
    other = ingest.new_batch()
    assert ingest.claim_many(["d"], 10_000, other) == {"d": Claim.CLAIMED}
    ingest.release(first, ["a", "b", "c"])
    ingest.release(first, ["d"])  # not first's: left alone
    writes[1].clear()
    assert set(ingest.claim_many(["a", "b", "c"], 10_000, ingest.new_batch()).values()) == {Claim.CLAIMED}
    assert writes[1] == ["TransactWriteItems"]
    assert ingest.claim("d", 10_000, ingest.new_batch()) is Claim.IN_FLIGHT


def test_a_claim_taken_over_keeps_the_identity_it_was_published_under(writes, table, clock):
    """An event first claimed (and maybe published) alone stays alone when a resend that plans it into a bundle
    takes its claim over; one first planned into a bundle keeps that bundle (docs/decisions/0008)."""
    ingest = ledger(writes, table, clock, vendor="ingest")
    assert ingest.claim("alone", 1_000, ingest.new_batch()) is Claim.CLAIMED  # its holder dies
    assert ingest.claim("bundled", 1_000, ingest.new_batch(), bundle="b-first") is Claim.CLAIMED
    clock.now += 2  # the leases run out
    claims = ingest.claim_many(
        ["alone", "bundled"], 10_000, ingest.new_batch(), bundles={"alone": "b2", "bundled": "b2"}
    )
    assert claims == {"alone": Claim.CLAIMED, "bundled": Claim.CLAIMED}
    assert ingest.bundle_of == {"bundled": "b-first"}


def test_letters_of_one_bundle_redriven_together_are_each_sent_once(writes, table, clock):
    """Every event of a bundle dead-lettered (one letter each, a bundle of one under the bundle's id), then
    redriven: a batch holding several of those letters sends each of them, and the original message, received
    once more, sends none."""
    a = ledger(writes, table, clock)
    first = a.new_batch()
    assert a.claim_bundle("b1", {"m1": ["e1", "e2", "e3"]}, 30_000, first) == (Claim.CLAIMED, {"e1", "e2", "e3"})
    for i, event_id in enumerate(["e1", "e2", "e3"]):
        a.dead_lettered(event_id, f"m1#{i}", "retries_exhausted")
    a.settle(first, {}, [], moved=["e1", "e2", "e3"])
    assert a.claim_bundle("b1", {"m1": ["e1", "e2", "e3"]}, 30_000, a.new_batch()) == (Claim.DUPLICATE, frozenset())
    letters = a.new_batch()  # two letters and the original message's last event in one batch
    assert a.claim_bundle("b1", {"m7": ["e1"], "m8": ["e2"], "m1": ["e3"]}, 30_000, letters) == (
        Claim.CLAIMED,
        {"e1", "e2"},
    )
    a.settle(letters, {"e1": 200, "e2": 200}, [])
    assert a.claim_bundle("b1", {"m7": ["e1"], "m8": ["e2"]}, 30_000, a.new_batch()) == (Claim.DUPLICATE, frozenset())
    assert a.claim_bundle("b1", {"m9": ["e3"]}, 30_000, a.new_batch())[1] == {"e3"}  # its own letter, still owed
