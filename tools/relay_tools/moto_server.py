"""moto's server as the local stack runs it (`python -m relay_tools.moto_server -H 127.0.0.1 -p PORT`), with
two of moto's costs taken off DynamoDB, its answers unchanged:

- moto keeps every model object it ever made (`BaseModel.instances_tracked`, for its dashboard), deep copies
  included. TransactWriteItems deep-copies the whole table to roll back on failure, so a server that ran a
  few thousand ingest requests held every copy of every table it had: memory grew with the square of the
  traffic (a 3,000-event soak passed 24 GiB). DynamoDB's models are not tracked here (the dashboard is not
  used; S3's cleanup, which reads its own tracked keys, keeps them).
- TransactWriteItems copies the table once per item of the transaction before it writes anything, the
  same copy a hundred times for a request of 100 events: here once per table and transaction.
"""

from __future__ import annotations

import copy
import sys
import threading
from typing import Any

_transaction = threading.local()  # the table copies of the transaction a thread runs, by id of the table


def _untracked_dynamodb(base: Any) -> None:
    """`BaseModel.__new__` without the instance list for DynamoDB's models."""
    tracked_new = base.__new__

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        if cls.__module__.startswith("moto.dynamodb."):
            return object.__new__(cls)
        return tracked_new(cls, *args, **kwargs)

    base.__new__ = __new__


def _copy_once_per_transaction(backend_class: Any, models: Any, table_class: type) -> None:
    """TransactWriteItems' backup: each table deep-copied once (the copies it made per item were equal: it
    copies before it writes)."""
    real_deepcopy = copy.deepcopy
    transact = backend_class.transact_write_items

    class _Copy:
        @staticmethod
        def deepcopy(obj: Any, memo: Any = None) -> Any:
            copies = getattr(_transaction, "copies", None)
            if copies is None or not isinstance(obj, table_class):
                return real_deepcopy(obj, memo)
            if id(obj) not in copies:
                copies[id(obj)] = real_deepcopy(obj, memo)
            return copies[id(obj)]

        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

    def transact_write_items(self: Any, transact_items: Any) -> Any:
        _transaction.copies = {}
        try:
            return transact(self, transact_items)
        finally:
            _transaction.copies = None

    models.copy = _Copy()
    backend_class.transact_write_items = transact_write_items


def patch() -> None:
    from moto.core.common_models import BaseModel
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    _untracked_dynamodb(BaseModel)
    _copy_once_per_transaction(models.DynamoDBBackend, models, Table)


def main(argv: list[str] | None = None) -> None:
    patch()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
