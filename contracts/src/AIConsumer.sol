// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {IAIOracle} from "./interfaces/IAIOracle.sol";
import {IAIOracleConsumer} from "./interfaces/IAIOracleConsumer.sol";
import {IAIOracleErrors} from "./interfaces/IAIOracleErrors.sol";
import {RequestParams, Commitment, OffchainResult, ResultSpec} from "./OracleTypes.sol";

/// @title AIConsumer
/// @notice Base for contracts that ask the oracle. It sends requests (callback: this contract), accepts
/// a callback only from the oracle and only for a request this contract made and has not yet received,
/// gives the fee of a request nobody answered back to whoever paid, and, if the contract opts in,
/// accepts results bought off-chain, each once.
/// Implement {_onOracleResult}; decode `result` with `abi.decode` for the result type you asked for.
/// @dev Inherits {IAIOracleErrors} so the oracle's errors, which bubble up through {_requestAI}, are in
/// this contract's ABI.
///
/// Refunds: the oracle credits a cancelled request's fee to this contract, and its `withdraw` sends
/// this contract's whole oracle balance. So a reclaim always withdraws everything into this contract,
/// and what is owed to payers is kept here, counted in {refundOf} and {refundsOwed}: one payer's
/// reclaim can never take another's refund, and a payer that cannot receive ETH never blocks a reclaim.
abstract contract AIConsumer is IAIOracleConsumer, IAIOracleErrors {
    IAIOracle public immutable ORACLE;

    /// @notice Who paid for each open request; cleared when its result arrives or its fee is reclaimed.
    mapping(bytes32 requestId => address payer) public payerOf;
    mapping(bytes32 resultId => bool used) public offchainResultUsed;
    /// @notice Refunds credited to each payer and not yet withdrawn ({withdrawRefund}).
    mapping(address payer => uint256 amount) public refundOf;
    /// @notice The sum of {refundOf}: ETH this contract holds for payers and never spends on requests.
    uint256 public refundsOwed;

    error OnlyOracle(address caller);
    error UnexpectedResult(bytes32 requestId);
    error WrongConsumer(address consumer);
    error ResultAlreadyUsed(bytes32 resultId);
    error OffchainResultsNotAccepted();
    /// @notice An off-chain result answers a question this consumer did not register.
    error UnexpectedQuery(bytes32 queryHash);
    /// @notice Only the payer of `requestId` may name where its refund goes.
    error NotPayer(bytes32 requestId, address caller);
    /// @notice A refund cannot be sent to the zero address; name an account that can receive ETH.
    error InvalidRecipient();
    /// @notice A request would spend ETH held for payers' refunds: this contract holds `balance`, the
    /// payment takes `payment`, and `owed` must stay.
    error RefundsReserved(uint256 balance, uint256 payment, uint256 owed);

    /// @notice The request was cancelled after its deadline and its `fee` is the payer's again: sent to
    /// a recipient ({RefundSent}) or credited ({RefundCredited}).
    event FeeReclaimed(bytes32 indexed requestId, address indexed payer, uint256 fee);
    /// @notice `amount` of `requestId`'s fee was added to `payer`'s {refundOf}.
    event RefundCredited(address indexed payer, bytes32 indexed requestId, uint256 amount);
    /// @notice `amount` owed to `payer` was sent to `to` (a reclaim by the payer, or {withdrawRefund}).
    event RefundSent(address indexed payer, address indexed to, uint256 amount);
    event OffchainResultAccepted(bytes32 indexed resultId, address indexed signer);

    constructor(IAIOracle oracle) {
        ORACLE = oracle;
    }

    /// @notice Takes ETH only from the oracle (withdrawn refunds). A consumer that must take ETH from
    /// others overrides it, and keeps {refundsOwed} untouched.
    receive() external payable virtual {
        if (msg.sender != address(ORACLE)) revert OnlyOracle(msg.sender);
    }

    /// @notice Send `params` with `payment` (at least the quote; the oracle reverts with FeeBelowQuote
    /// otherwise), remembering `payer` as the one a reclaimed fee goes back to.
    /// @dev `payment` may come from this contract's balance, but never from the refunds it holds.
    function _requestAI(RequestParams memory params, uint256 payment, address payer)
        internal
        returns (bytes32 requestId)
    {
        uint256 owed = refundsOwed;
        if (owed != 0 && address(this).balance < payment + owed) {
            revert RefundsReserved(address(this).balance, payment, owed);
        }
        params.callback = address(this);
        requestId = ORACLE.request{value: payment}(params);
        payerOf[requestId] = payer;
    }

    /// @inheritdoc IAIOracleConsumer
    /// @dev Refuses callbacks for requests this contract did not make (anyone can name any callback
    /// in a request) and second deliveries; the oracle records the refusal as a failed callback.
    function onOracleResult(
        bytes32 requestId,
        uint8 status,
        uint16 reasonCode,
        bytes calldata result,
        bytes32 modelUsed,
        bytes32 receiptHash
    ) external {
        if (msg.sender != address(ORACLE)) revert OnlyOracle(msg.sender);
        if (payerOf[requestId] == address(0)) revert UnexpectedResult(requestId);
        delete payerOf[requestId];
        _onOracleResult(requestId, status, reasonCode, result, modelUsed, receiptHash);
    }

    /// @notice After the deadline of a request nobody answered, cancel it and credit its fee to whoever
    /// paid for it, who takes it with {withdrawRefund}. Anyone may call it (a keeper, the payer): the
    /// fee only ever goes to the payer. `commitment` is rebuilt from the oracle's `Requested` event.
    function reclaimFee(bytes32 requestId, Commitment calldata commitment) external {
        (address payer, uint256 fee) = _reclaim(requestId, commitment);
        if (fee != 0) {
            refundOf[payer] += fee;
            refundsOwed += fee;
            emit RefundCredited(payer, requestId, fee);
        }
    }

    /// @notice The payer's own reclaim: cancel the request and send its fee straight to `to` (the payer
    /// itself, or any account that can receive ETH when the payer cannot). Reverts with
    /// {WithdrawFailed} if `to` refuses the ETH; nothing changes then, so another `to` can be named.
    function reclaimFee(bytes32 requestId, Commitment calldata commitment, address payable to) external {
        if (to == address(0)) revert InvalidRecipient();
        address payer = payerOf[requestId];
        if (payer != address(0) && msg.sender != payer) revert NotPayer(requestId, msg.sender);
        (, uint256 fee) = _reclaim(requestId, commitment);
        if (fee != 0) _sendRefund(payer, to, fee);
    }

    /// @notice Send the caller's credited refunds to `to`. Reverts with {NothingToWithdraw} if there are
    /// none, and with {WithdrawFailed} if `to` refuses the ETH (the credit stays).
    function withdrawRefund(address payable to) external {
        if (to == address(0)) revert InvalidRecipient();
        uint256 amount = refundOf[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        refundOf[msg.sender] = 0;
        refundsOwed -= amount;
        _sendRefund(msg.sender, to, amount);
    }

    /// @dev Cancels `requestId` at the oracle (which checks the commitment, that this contract asked, and
    /// that the deadline passed) and withdraws this contract's whole oracle balance here.
    function _reclaim(bytes32 requestId, Commitment calldata commitment) private returns (address payer, uint256 fee) {
        payer = payerOf[requestId];
        if (payer == address(0)) revert UnexpectedResult(requestId);
        delete payerOf[requestId];
        ORACLE.cancel(requestId, commitment);
        fee = commitment.fee; // the oracle checked it against the stored commitment
        // A zero fee credits nothing, and the oracle refuses to withdraw an empty balance.
        if (fee != 0) ORACLE.withdraw(payable(address(this)));
        emit FeeReclaimed(requestId, payer, fee);
    }

    function _sendRefund(address payer, address payable to, uint256 amount) private {
        emit RefundSent(payer, to, amount);
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert WithdrawFailed(to);
    }

    /// @notice Deliver a result bought off-chain (agent API): signed by a signer the oracle registered,
    /// naming this contract, still valid, not used before, and accepted by {_acceptOffchainResult}.
    function acceptSignedResult(OffchainResult calldata r, bytes calldata signature) external {
        if (r.consumer != address(this)) revert WrongConsumer(r.consumer);
        if (offchainResultUsed[r.resultId]) revert ResultAlreadyUsed(r.resultId);
        address signer = ORACLE.verifyOffchainResult(r, signature);
        offchainResultUsed[r.resultId] = true;
        emit OffchainResultAccepted(r.resultId, signer);
        _acceptOffchainResult(r);
    }

    /// @notice The query hash an off-chain result must carry to answer `modelSpec`, `prompt`, `result`.
    function queryHash(string memory modelSpec, bytes memory prompt, ResultSpec memory result)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(modelSpec, prompt, result));
    }

    /// @dev Called with a result from the oracle for a request this contract made.
    function _onOracleResult(
        bytes32 requestId,
        uint8 status,
        uint16 reasonCode,
        bytes calldata result,
        bytes32 modelUsed,
        bytes32 receiptHash
    ) internal virtual;

    /// @dev Off-chain results are refused unless a consumer overrides this, checks `r.queryHash`
    /// against a question it wants answered (reverting {UnexpectedQuery} otherwise), and handles the
    /// result (its `resultId` is not a request id).
    function _acceptOffchainResult(OffchainResult calldata) internal virtual {
        revert OffchainResultsNotAccepted();
    }
}
