// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {AIOracle} from "./AIOracle.sol";
import {IAIOracleConsumer} from "./interfaces/IAIOracleConsumer.sol";
import {RequestParams, Commitment, OffchainResult, ResultSpec} from "./OracleTypes.sol";

/// @title AIConsumer
/// @notice Base for contracts that ask the oracle. It sends requests (callback: this contract), accepts
/// a callback only from the oracle and only for a request this contract made and has not yet received,
/// lets whoever paid reclaim the fee of a request nobody answered, and, if the contract opts in, accepts
/// results bought off-chain, each once.
/// Implement {_onOracleResult}; decode `result` with `abi.decode` for the result type you asked for.
abstract contract AIConsumer is IAIOracleConsumer {
    AIOracle public immutable ORACLE;

    /// @notice Who paid for each open request; cleared when its result arrives or its fee is reclaimed.
    mapping(bytes32 requestId => address payer) public payerOf;
    mapping(bytes32 resultId => bool used) public offchainResultUsed;

    error OnlyOracle(address caller);
    error UnexpectedResult(bytes32 requestId);
    error WrongConsumer(address consumer);
    error ResultAlreadyUsed(bytes32 resultId);
    error OffchainResultsNotAccepted();

    event FeeReclaimed(bytes32 indexed requestId, address indexed payer, uint256 fee);
    event OffchainResultAccepted(bytes32 indexed resultId, address indexed signer);

    constructor(AIOracle oracle) {
        ORACLE = oracle;
    }

    /// @notice Send `params` with `payment` (at least the quote; the oracle reverts with FeeBelowQuote
    /// otherwise), remembering `payer` as the one a reclaimed fee goes back to.
    function _requestAI(RequestParams memory params, uint256 payment, address payer)
        internal
        returns (bytes32 requestId)
    {
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

    /// @notice After the deadline of a request nobody answered, cancel it and send its fee back to
    /// whoever paid for it. Anyone may call it; the fee only ever goes to the payer.
    function reclaimFee(bytes32 requestId, Commitment calldata commitment) external {
        address payer = payerOf[requestId];
        if (payer == address(0)) revert UnexpectedResult(requestId);
        delete payerOf[requestId];
        ORACLE.cancel(requestId, commitment);
        // Only this contract's own cancels credit its oracle balance, and each is withdrawn at once:
        // the balance is exactly this request's fee.
        ORACLE.withdraw(payable(payer));
        emit FeeReclaimed(requestId, payer, commitment.fee);
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
    /// against a question it wants answered, and handles the result (its `resultId` is not a request id).
    function _acceptOffchainResult(OffchainResult calldata) internal virtual {
        revert OffchainResultsNotAccepted();
    }
}
