"""The domain exception tree, the one place errors are defined. Each error carries its
stable code and HTTP status; the API renders any WalletError as its JSON error, the dashboard
as an inline message or an error page."""


class WalletError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, **self.details}


class LedgerError(WalletError):
    """A movement (or an account change) refused by the ledger's rules."""

    code = "ledger_error"


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


class InvalidUser(LedgerError):
    code = "invalid_user"
    status = 422


class UnknownStatus(LedgerError):
    code = "invalid_status"
    status = 422


class AccountClosed(AccountFrozen):
    code = "account_closed"


class UserClosed(LedgerError):
    code = "user_closed"
    status = 409


class BalanceNotZero(LedgerError):
    code = "balance_not_zero"
    status = 409


class InvalidTransfer(LedgerError):
    code = "invalid_transfer"
    status = 422


class DuplicateReference(LedgerError):
    """A batch names one reference_id twice: the later item is refused, the first goes on."""

    code = "duplicate_reference"
    status = 422


class BatchRefused(LedgerError):
    """An atomic batch of which an item was refused: nothing of it was posted."""

    code = "batch_refused"
    status = 422


class BatchAborted(LedgerError):
    """An item of an atomic batch that was valid, not posted because another was refused."""

    code = "batch_aborted"
    status = 424


class InvalidUpload(WalletError):
    """A bulk file that cannot be read at all (encoding, columns, size)."""

    code = "invalid_upload"
    status = 422


class InvalidMetadata(LedgerError):
    code = "invalid_metadata"
    status = 422


# ---------------------------------------------------------------- requests and callers


class MalformedJson(WalletError):
    code = "malformed_json"
    status = 400


class UnsupportedContentType(WalletError):
    code = "unsupported_media_type"
    status = 415


class InvalidRequest(WalletError):
    code = "validation_error"
    status = 422


class Unauthenticated(WalletError):
    code = "unauthorized"
    status = 401
    headers = {"WWW-Authenticate": 'Bearer realm="wallet"'}


class InsufficientScope(WalletError):
    code = "insufficient_scope"
    status = 403


class InvalidKeyRequest(WalletError):
    code = "invalid_api_key_request"
    status = 422


class UnknownApiKey(NotFound):
    code = "api_key_not_found"


class InvalidOperator(WalletError):
    code = "invalid_operator"
    status = 422


class DuplicateOperator(WalletError):
    code = "operator_exists"
    status = 409


class UnknownOperator(NotFound):
    code = "operator_not_found"


class LockedOut(WalletError):
    code = "operator_locked"
    status = 429


class InvalidLimits(WalletError):
    code = "invalid_limits"
    status = 422


# ---------------------------------------------------------------- operator controls


class ControlError(WalletError):
    """A dashboard movement or decision refused by the operator controls (controls.py,
    approvals.py)."""

    code = "control_error"
    status = 422


class InvalidReasonCode(ControlError):
    code = "invalid_reason_code"


class InvalidTicket(ControlError):
    code = "invalid_ticket"


class InvalidPolicy(ControlError):
    code = "invalid_policy"


class DailyLimitExceeded(ControlError):
    code = "daily_limit_exceeded"


class UnknownRequest(NotFound):
    code = "request_not_found"


class SelfApproval(ControlError):
    code = "self_approval"
    status = 403


class NotAnApprover(ControlError):
    code = "not_an_approver"
    status = 403


class RequestDecided(ControlError):
    code = "request_decided"
    status = 409


class RequestExpired(RequestDecided):
    code = "request_expired"


class RequestFailed(RequestDecided):
    """Approved, but the ledger refused the movement (funds, status): nothing moved."""

    code = "request_failed"


# ---------------------------------------------------------------- holds


class NotYourUpload(ControlError):
    code = "not_your_upload"
    status = 403


class FileAlreadySubmitted(ControlError):
    """The same file (by its hash) is already a submitted bulk grant."""

    code = "file_already_submitted"
    status = 409


class UnknownBulkGrant(NotFound):
    code = "bulk_grant_not_found"


class UnknownHold(NotFound):
    code = "hold_not_found"


class HoldNotOpen(LedgerError):
    """Capture or void of a hold that is no longer open: the code says what it became."""

    code = "hold_not_open"
    status = 409


class HoldCaptured(HoldNotOpen):
    code = "hold_captured"


class HoldVoided(HoldNotOpen):
    code = "hold_voided"


class HoldExpired(HoldNotOpen):
    code = "hold_expired"


class CaptureExceedsHold(LedgerError):
    code = "capture_exceeds_hold"
    status = 422


class InvalidExpiry(LedgerError):
    code = "invalid_expiry"
    status = 422


# ---------------------------------------------------------------- webhooks


class InvalidWebhook(WalletError):
    code = "invalid_webhook"
    status = 422


class UnknownWebhook(NotFound):
    code = "unknown_webhook"


class UnknownDelivery(NotFound):
    code = "unknown_delivery"
