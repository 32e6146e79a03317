"""The domain exception tree. Each error carries its stable code and HTTP status."""


class LedgerError(Exception):
    code = "ledger_error"
    status = 400

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, **self.details}


class InvalidAmount(LedgerError):
    code = "invalid_amount"
    status = 422


class AmountTooLarge(InvalidAmount):
    code = "amount_too_large"


class BalanceLimit(LedgerError):
    code = "balance_limit"
    status = 422


class UnbalancedTransaction(LedgerError):
    code = "unbalanced_transaction"
    status = 422


class NotFound(LedgerError):
    code = "not_found"
    status = 404


class UnknownUser(NotFound):
    code = "user_not_found"


class UnknownAccount(NotFound):
    code = "account_not_found"


class UnknownAsset(NotFound):
    code = "asset_not_found"
    status = 422


class UnknownTransaction(NotFound):
    code = "transaction_not_found"


class InsufficientFunds(LedgerError):
    code = "insufficient_funds"
    status = 422


class AccountFrozen(LedgerError):
    code = "account_frozen"
    status = 423


class IdempotencyConflict(LedgerError):
    code = "idempotency_key_reused"
    status = 422


class ReferenceTaken(LedgerError):
    """The reference_id belongs to another caller's transaction; nothing of it is revealed."""

    code = "reference_taken"
    status = 409


class AlreadyReversed(LedgerError):
    code = "already_reversed"
    status = 409


class NotReversible(LedgerError):
    code = "not_reversible"
    status = 422


class DuplicateUser(LedgerError):
    code = "user_exists"
    status = 409


class InvalidCursor(LedgerError):
    code = "invalid_cursor"
    status = 400
