"""The archive's formats and the pure parts of replay, import and forget (docs/archive.md)."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime

import pydantic_core
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relay.archive import ARCHIVE_ATTRIBUTE, SEALED_FIELDS, partition_prefix
from relay.archive.lines import NotAnArchiveMessage, archive_record, transform
from relay.archive.outgoing import Accepted, archive_messages
from relay.archive.reading import ArchiveLineError, object_lines, read_line, source_of_key
from relay.archive.sealing import NONCE_BYTES, Sealer
from relay.aws.sns import SNS_MAX_BYTES
from relay.journey.erasure import ERASED, erase_events
from relay.models import pii
from relay.models.names import is_replay_id, ledger_name, namespace_parts
from relay.queued.message import parse_message
from relay_tools.forget import person
from relay_tools.importing import ImportError_, Row, parse_pairs, read_rows
from relay_tools.replay import RateLimit, ReplayRequest

from ..conftest import web_event

KEY = bytes(range(32))
AT = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


class KnownKey(Sealer):
    """A Sealer whose data key is fixed (no KMS in unit tests): the lines it writes are what the function writes."""

    def __init__(self) -> None:
        super().__init__("alias/test")
        self._key = (float("inf"), AESGCM(KEY), "ZW5jcnlwdGVkLWtleQ==")

    def _current(self):
        return self._key[1], self._key[2]


def _message(*events: dict, source: str = "eu", bundle: str | None = "ab" * 16) -> bytes:
    messages, too_large = archive_messages(
        source, AT.timestamp(), [Accepted(e, ["applovin", "adroll.eu"], bundle) for e in events]
    )
    assert too_large == 0 and len(messages) == 1
    message, count = messages[0]
    assert (message.attribute_name, message.attribute, count) == (ARCHIVE_ATTRIBUTE, f'["{source}"]', len(events))
    return message.body.encode()


def test_an_archive_line_holds_no_personal_field_in_clear_and_opens_to_the_event():
    event = web_event(event_id="o-1")
    event["user"].update(email=" Ada@Example.com ", phone="+1 650 555 1212", first_name="Ada", last_name="Lovelace")
    data, keys = archive_record(_message(event), KnownKey())
    assert keys == {"source": "eu", "dt": "2026-12-07"}
    (raw,) = data.splitlines()
    text = raw.decode()
    for clear in ("Ada@Example.com", "ada@example.com", "650 555 1212", "Lovelace", event["user"]["ip"]):
        assert clear not in text, clear
    line = json.loads(raw)
    assert line["email_sha256"] == pii.hash_email("ada@example.com")
    assert line["phone_sha256"] == pii.sha256_hex("16505551212")
    assert line["connections"] == ["applovin", "adroll.eu"] and line["bundle"] == "ab" * 16
    assert line["accepted_at"] == "2026-12-07T06:00:00.000Z"
    sealed = base64.b64decode(line["sealed"]["data"])
    opened = json.loads(AESGCM(KEY).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], b"o-1"))
    assert set(opened) == {"email", "phone", "ip", "first_name", "last_name"} <= set(SEALED_FIELDS)
    assert opened["email"] == " Ada@Example.com "
    restored = {**json.loads(line["event"]), "user": {**json.loads(line["event"])["user"], **opened}}
    assert restored == event
    with pytest.raises(InvalidTag):  # a sealed value moved to another event's line does not open
        AESGCM(KEY).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], b"o-2")


def test_the_ingest_splits_archive_messages_at_the_sns_limit_and_counts_an_event_too_large():
    big = web_event(event_id="big", properties={"blob": "x" * 100_000})
    events = [Accepted(web_event(event_id=f"e{i}", properties={"blob": "y" * 60_000}), ["applovin"]) for i in range(6)]
    huge = Accepted(web_event(event_id="huge", properties={"blob": "z" * SNS_MAX_BYTES}), ["applovin"])
    messages, too_large = archive_messages("default", AT.timestamp(), [*events, huge, Accepted(big, ["adroll"])])
    assert too_large == 1
    assert [count for _, count in messages] == [4, 3]
    for message, _ in messages:
        assert message.size <= SNS_MAX_BYTES
        assert json.loads(message.body)["archive"] == 1


def test_the_transformation_partitions_by_source_and_day_and_drops_what_is_not_an_archive_message():
    record = {
        "recordId": "1",
        "approximateArrivalTimestamp": 0,
        "data": base64.b64encode(_message(web_event())).decode(),
    }
    envelope = json.dumps({"Type": "Notification", "Message": _message(web_event(), source="us").decode()})
    wrapped = {"recordId": "2", "approximateArrivalTimestamp": 0, "data": base64.b64encode(envelope.encode()).decode()}
    alien = {"recordId": "3", "approximateArrivalTimestamp": 0, "data": base64.b64encode(b'{"hello": 1}').decode()}
    answer = transform({"records": [record, wrapped, alien]}, KnownKey())["records"]
    assert [(r["recordId"], r["result"]) for r in answer] == [("1", "Ok"), ("2", "Ok"), ("3", "Dropped")]
    assert answer[0]["metadata"]["partitionKeys"] == {"source": "eu", "dt": "2026-12-07"}
    assert answer[1]["metadata"]["partitionKeys"]["source"] == "us"
    with pytest.raises(NotAnArchiveMessage, match="archive: must be 1"):
        archive_record(b'{"archive": 2}', KnownKey())


def test_archived_lines_read_back_with_their_source_from_the_key():
    data, _ = archive_record(_message(web_event(event_id="o-9", timestamp=None)), KnownKey())
    key = partition_prefix("eu", "2026-12-07") + "stream-1-2026-12-07-06-00-00-x.gz"
    assert source_of_key(key) == "eu"
    (raw,) = list(object_lines(gzip.compress(data + b"\n")))
    archived = read_line(raw, "eu")
    assert (archived.event_id, archived.bundle, archived.connections) == ("o-9", "ab" * 16, ("applovin", "adroll.eu"))
    event = archived.event(None)  # sealed fields left sealed: no opener
    assert "ip" not in event["user"] and event["timestamp"] == AT.isoformat()  # when it was accepted
    for bad, why in ((b"{", "is not JSON"), (b'{"v": 2}', "v: must be 1"), (b'{"v": 1}', "missing")):
        with pytest.raises(ArchiveLineError, match=why):
            read_line(bad, "eu")


def test_a_replay_is_its_arguments_and_an_again_replay_claims_apart():
    since = datetime(2026, 12, 1, tzinfo=UTC)
    one = ReplayRequest(since, AT, ("eu",), ("applovin",), again=True)
    assert one.replay_id == ReplayRequest(since, AT, ("eu",), ("applovin",), again=True).replay_id
    assert is_replay_id(one.replay_id)
    assert one.replay_id != ReplayRequest(since, AT, ("eu",), ("applovin",)).replay_id
    later = ReplayRequest(since, datetime(2026, 12, 8, tzinfo=UTC), again=True, until_now=True)
    assert later.replay_id == ReplayRequest(since, AT, again=True, until_now=True).replay_id  # "until now"
    assert ledger_name("applovin.eu", "us", one.replay_id) == f"applovin.eu@us!{one.replay_id}"
    assert ledger_name("applovin", "default", one.replay_id) == f"applovin!{one.replay_id}"
    assert namespace_parts(f"applovin.eu@us!{one.replay_id}") == ("applovin.eu", "us")


def test_a_queued_message_names_its_replay_or_is_refused():
    body = {"event_id": "o-1", "name": "purchase", "payloads": {"applovin": {"x": 1}}, "source": "eu"}
    (queued,) = parse_message("m1", json.dumps({**body, "replay": "0123456789abcdef"}), "applovin")
    assert (queued.replay, queued.sent_by, queued.error) == ("0123456789abcdef", "eu", None)
    (plain,) = parse_message("m1", json.dumps(body), "applovin")
    assert plain.replay == ""
    (bad,) = parse_message("m1", json.dumps({**body, "replay": "../x"}), "applovin")
    assert bad.event is None and "replay: must be a replay's id" in bad.error


def test_the_rate_limit_spaces_what_is_queued():
    now, slept = [0.0], []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    limit = RateLimit(10, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limit.take(10)  # ten events: a second's share
    assert slept == [1.0, 1.0]


def test_import_reads_ndjson_and_csv_by_line_and_names_what_it_cannot_use(tmp_path):
    ndjson = tmp_path / "events.ndjson"
    ndjson.write_text('{"event_id": "a"}\n\n[1]\n{"event_id":\n')
    rows = list(read_rows(ndjson, {}, {"source": "web"}))
    assert isinstance(rows[0], Row) and rows[0].line == 1 and rows[0].event == {"event_id": "a", "source": "web"}
    assert rows[1] == {"line": 3, "errors": ["(line): must be a JSON object, one canonical event"]}
    assert rows[2]["line"] == 4
    crm = tmp_path / "crm.csv"
    crm.write_text('Order,Email,Note\no-1,a@example.com,"two\nlines"\no-2,,x\no-3\n')
    rows = list(read_rows(crm, {"Order": "event_id", "Email": "user.email"}, {}))
    assert rows[0].line == 2 and rows[0].event == {
        "event_id": "o-1",
        "user": {"email": "a@example.com"},
        "Note": "two\nlines",
    }
    assert rows[1].line == 4 and rows[1].event == {"event_id": "o-2", "Note": "x"}
    assert rows[2] == {"line": 5, "errors": ["(row): 1 columns; the header has 3"]}
    with pytest.raises(ImportError_, match="--map: no column named 'Mail'"):
        list(read_rows(crm, {"Mail": "user.email"}, {}))
    with pytest.raises(ImportError_, match="only for a CSV"):
        list(read_rows(ndjson, {"a": "b"}, {}))
    with pytest.raises(ImportError_, match="'x' is not NAME=VALUE"):
        parse_pairs(["x"], "--map")


def test_forget_names_a_person_the_ways_the_relay_keeps_them():
    who = person(["u-1"], ["Ada@Example.com"], [], ["+1 650 555 1212"], [])
    assert pii.hash_email("ada@example.com") in who.emails and pii.sha256_hex("16505551212") in who.phones
    assert who.matches_line({"user_id": "u-1"}) and not who.matches_line({"user_id": "u-2"})
    assert who.matches_event({"user": {"email": "ada@example.com"}})
    assert who.matches_event({"user": {"phone": "(650) 555-1212", "country": "US"}})
    for bad, why in ((["nope"], "--email: must be an email"),):
        with pytest.raises(ValueError, match=why):
            person([], bad, [], [], [])
    with pytest.raises(ValueError, match="64 hex digits"):
        person([], [], ["abc"], [], [])
    with pytest.raises(ValueError, match="--phone"):
        person([], [], [], ["12"], [])
    assert not person([], [], [], [], [])


def test_erasure_takes_an_event_out_of_a_journey_and_the_requests_that_carried_it():
    journey = {
        "events": {"o-1": {"outcome": "delivered"}, "o-2": {"outcome": "delivered"}},
        "requests": [
            {"events": ["o-1", "o-2"], "body": '{"email": "digest"}', "response": "OK"},
            {"events": ["o-2"], "body": "{}", "response": "OK"},
        ],
    }
    data, changed = erase_events(journey, {"o-1"})
    assert changed and set(data["events"]) == {"o-2"}
    assert data["requests"][0] == {"events": ["o-2"], "body": ERASED, "response": ERASED}
    assert data["requests"][1]["body"] == "{}"
    assert erase_events(data, {"o-1"}) == (data, False)


def test_sealed_values_are_json():
    sealed = KnownKey().seal({"ip": "203.0.113.9"}, "o-1")
    raw = base64.b64decode(sealed["data"])
    assert pydantic_core.from_json(AESGCM(KEY).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], b"o-1")) == {
        "ip": "203.0.113.9"
    }
