"""The one DynamoDB table: its key formats (`table`), the exactly-once ledger, flags with their audit
trail, and the read-only flag reader the guarded client uses."""

__all__ = ["DynamoFlagSource", "FlagStore", "Ledger", "create_table"]

from guardrail.store.flag_reader import DynamoFlagSource
from guardrail.store.flags import FlagStore
from guardrail.store.ledger import Ledger
from guardrail.store.table import create_table
