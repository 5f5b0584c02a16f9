"""The double-entry ledger: accounts with maintained balances, idempotent balanced postings.

Other domains call the functions re-exported here (see service.py for how a posting stays safe).
"""

from billfold.ledger.schemas import (
    CREDITS,
    EntryLine,
    HistoryItem,
    HistoryPage,
    PostedEntry,
    PostedTransaction,
)
from billfold.ledger.service import (
    MAIN,
    AccountRef,
    SystemAccount,
    account_balance,
    account_history,
    balance_of,
    customer_account,
    customer_history,
    debit_credits,
    find_ledger_account,
    get_or_create_ledger_account,
    get_transaction_by_key,
    grant_credits,
    post_transaction,
    shard_for,
    system_account,
    system_balance,
    transfer,
)

__all__ = [
    "CREDITS",
    "MAIN",
    "AccountRef",
    "EntryLine",
    "HistoryItem",
    "HistoryPage",
    "PostedEntry",
    "PostedTransaction",
    "SystemAccount",
    "account_balance",
    "account_history",
    "balance_of",
    "customer_account",
    "customer_history",
    "debit_credits",
    "find_ledger_account",
    "get_or_create_ledger_account",
    "get_transaction_by_key",
    "grant_credits",
    "post_transaction",
    "shard_for",
    "system_account",
    "system_balance",
    "transfer",
]
