"""AWS calls that fail on purpose: DynamoDB throttling a write, a transaction conflict, SNS unavailable.

conftest's `aws_limits` routes every botocore API call through `AwsFaults.before` (and `after`): a fault
planned for an operation answers it with the ClientError AWS would (the call is not made), or makes the call
and loses its answer (`lost=True`: the write happened, the caller cannot know). Real boto3 against moto
either way: only the answer is replaced, as a throttled or failed call would have it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from botocore.exceptions import ClientError

MESSAGES = {
    "ProvisionedThroughputExceededException": "The level of configured provisioned throughput for the table was"
    " exceeded",
    "ThrottlingException": "Rate exceeded",
    "TransactionConflictException": "Transaction is ongoing for the item",
    "InternalServerError": "Internal server error",
    "InternalError": "We encountered an internal error. Please try again.",
}


@dataclass
class Fault:
    operation: str
    code: str
    when: Callable[[dict[str, Any]], bool]
    times: int
    lost: bool  # the call is made, its answer lost


@dataclass
class AwsFaults:
    current: ClassVar[AwsFaults | None] = None
    planned: list[Fault] = field(default_factory=list)
    # an object with hook(when, operation, client): raises to kill the invocation, or pauses it (test_state_machine)
    killer: Any = None
    injected: list[tuple[str, str]] = field(default_factory=list)

    def fail(
        self,
        operation: str,
        code: str = "ProvisionedThroughputExceededException",
        when: Callable[[dict[str, Any]], bool] = lambda params: True,
        times: int = 1,
        lost: bool = False,
    ) -> None:
        """The next `times` calls of `operation` (e.g. "PutItem") whose parameters satisfy `when` fail."""
        self.planned.append(Fault(operation, code, when, times, lost))

    def clear(self) -> None:
        self.planned.clear()

    def _take(self, operation: str, params: dict[str, Any], lost: bool) -> Fault | None:
        for fault in self.planned:
            if fault.operation == operation and fault.lost == lost and fault.times > 0 and fault.when(params):
                fault.times -= 1
                self.injected.append((operation, fault.code))
                return fault
        return None

    def before(self, operation: str, params: dict[str, Any], client: Any = None) -> None:
        self._at("before", operation, params, client)

    def after(self, operation: str, params: dict[str, Any], client: Any = None) -> None:
        self._at("after", operation, params, client)

    def _at(self, when: str, operation: str, params: dict[str, Any], client: Any) -> None:
        if self.killer is not None:
            self.killer.hook(when, operation, client)
        fault = self._take(operation, params, lost=when == "after")
        if fault is not None:
            raise _error(fault, operation)


def _error(fault: Fault, operation: str) -> ClientError:
    status = 500 if fault.code.startswith("Internal") else 400
    response = {
        "Error": {"Code": fault.code, "Message": MESSAGES.get(fault.code, fault.code)},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)  # type: ignore[arg-type]
