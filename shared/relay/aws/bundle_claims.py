"""A bundle's claim (relay.aws.ledger): one claim, ``s2s-relay.<vendor>.bundle#<id>``, for the events a vendor
function received under one bundle id, whatever messages carried them (docs/decisions/0008)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from relay.aws.records import CLAIMED, DEAD_LETTERED_STATE, Claim, LedgerTable, _lease, _set, _strings, claim_key
from relay.queued.message import message_id_of


class BundleClaims(LedgerTable):
    def claim_bundle(
        self,
        bundle: str,
        messages: Mapping[str, Sequence[str]],
        remaining_ms: int,
        batch: str,
    ) -> tuple[Claim, frozenset[str]]:
        """One claim for the events of a bundle (relay.queued.message) — one write, where `claim` costs one per
        event. Returns the claim and the event_ids this invocation is to send.

        A bundle's id is the identity of its events at this vendor: the ingest publishes an event under the
        bundle its first claim recorded, whatever the order or grouping of a resend (docs/decisions/0008), and
        a dead letter of a bundle's event is itself a bundle of one with that id. So messages with the same
        bundle id may carry different events. The claim keeps `events` (every event published under the id),
        `pending` (what its batch is sending; absent: all of `events`), `owed` (events not delivered yet that
        its batch is not sending) and `moved` (events moved to the DLQ, not delivered). An event is still to
        send when it is new to the bundle, owed, pending and not delivered by the last batch (its record lists
        it failed; or it died before settling: in doubt, sent again), or moved to the DLQ and now back in its
        own letter (a bundle of one, redriven); a redelivery of the very message it was moved from sends it no
        more. `messages`: the event_ids of this bundle in each SQS message of the batch (by message id): letters of
        one bundle redriven together are claimed together, each still a bundle of one."""
        now = self.clock()
        lease = _lease(now, remaining_ms)
        everything = frozenset(e for ids in messages.values() for e in ids)
        item = self._record(
            self.bundle_key(bundle), CLAIMED, now, bundle={"S": bundle}, batch={"S": batch}, lease=lease
        )
        item["events"] = _strings(everything)
        self.trails[item["id"]["S"]] = [batch]
        old = self._put(item, "attribute_not_exists(id) OR expiration < :now", {":now": {"N": str(int(now))}})
        if old is None:
            return Claim.CLAIMED, everything
        if not old or old.get("status", {}).get("S") != CLAIMED:
            return Claim.IN_FLIGHT, frozenset()
        state = self._bundle_state(old, now)
        if state is None:
            return Claim.IN_FLIGHT, frozenset()
        known, undone, moved = state
        # a moved event is sent again only from its own dead letter, redriven (a bundle of one): another copy of a
        # message it was in leaves it in the DLQ, with its reason
        again = moved & {e for ids in messages.values() if len(ids) == 1 for e in ids}
        back = everything & (undone | again)  # what the message it was moved from does not send again
        here = {e for m, ids in messages.items() for e in self._moved_from(back & set(ids), m)} if back else set()
        to_send = (everything - known) | ((everything & (undone | again)) - here)
        if not to_send:
            return Claim.DUPLICATE, frozenset()
        item["events"] = _strings(known | everything)
        if to_send != known | everything:
            item["pending"] = _strings(to_send)
        if undone - everything:
            item["owed"] = _strings(undone - everything)
        if moved - to_send:
            item["moved"] = _strings(moved - to_send)
        self._follow(item, old, batch)
        condition, values = self._unchanged(old)
        return (
            (Claim.CLAIMED, frozenset(to_send))
            if self._put(item, condition, values) is None
            else (Claim.IN_FLIGHT, frozenset())
        )

    def _bundle_state(self, old: Mapping[str, Any], now: float) -> tuple[set[str], set[str], set[str]] | None:
        """A bundle claim about to be taken over: its events, those not delivered (owed, or its batch's failed),
        and those moved to the DLQ; None while its holder may still be sending."""
        known = _set(old, "events")
        pending = _set(old, "pending") if "pending" in old else known
        moved = _set(old, "moved")
        settled = self._batch_record(old["batch"]["S"])
        if settled is not None:
            return (
                known,
                _set(old, "owed") | (pending & _set(settled, "failed")),
                moved | (pending & _set(settled, "moved")),
            )
        if int(old["lease"]["N"]) > now * 1000:
            return None
        # its holder died before settling: what it was sending is in doubt (sent again), the rest was delivered
        return known, _set(old, "owed") | pending, moved

    def _moved_from(self, event_ids: Iterable[str], message_id: str) -> set[str]:
        """Those of `event_ids` that `dead_lettered` recorded as moved from SQS message `message_id` (an
        event of a bundle is moved with the key "<message id>#<index>"). One read per event: only after an
        invocation died between its DLQ moves and its batch record."""
        moved = set()
        for event_id in event_ids:
            item = (
                self.client.get_item(
                    TableName=self.table_name, Key={"id": {"S": claim_key(self.vendor, event_id)}}, ConsistentRead=True
                ).get("Item")
                or {}
            )
            source = item.get("message_id", {}).get("S", "")
            if item.get("status", {}).get("S") == DEAD_LETTERED_STATE and message_id_of(source) == message_id:
                moved.add(event_id)
        return moved
