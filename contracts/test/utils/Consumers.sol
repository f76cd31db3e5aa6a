// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {IAIOracleConsumer} from "../../src/interfaces/IAIOracleConsumer.sol";
import {AIOracle} from "../../src/AIOracle.sol";
import {AIConsumer} from "../../src/AIConsumer.sol";
import {Response, Commitment, RequestParams} from "../../src/OracleTypes.sol";

/// @notice Accepts every callback and does nothing (the gas-measurement consumer).
contract NoopConsumer is IAIOracleConsumer {
    function onOracleResult(bytes32, uint8, uint16, bytes calldata, bytes32, bytes32) external {}
}

/// @notice Records each callback and the gas it arrived with.
contract RecordingConsumer is IAIOracleConsumer {
    uint256 public calls;
    bytes32 public lastRequestId;
    uint8 public lastStatus;
    uint16 public lastReason;
    bytes public lastResult;
    bytes32 public lastModelUsed;
    bytes32 public lastReceiptHash;
    uint256 public gasAtEntry;
    address public lastCaller;

    function onOracleResult(
        bytes32 requestId,
        uint8 status,
        uint16 reasonCode,
        bytes calldata result,
        bytes32 modelUsed,
        bytes32 receiptHash
    ) external {
        gasAtEntry = gasleft();
        ++calls;
        lastCaller = msg.sender;
        lastRequestId = requestId;
        lastStatus = status;
        lastReason = reasonCode;
        lastResult = result;
        lastModelUsed = modelUsed;
        lastReceiptHash = receiptHash;
    }
}

contract RevertingConsumer is IAIOracleConsumer {
    error No();

    function onOracleResult(bytes32, uint8, uint16, bytes calldata, bytes32, bytes32) external pure {
        revert No();
    }
}

/// @notice Burns every unit of gas it is given.
contract GasBurningConsumer is IAIOracleConsumer {
    function onOracleResult(bytes32, uint8, uint16, bytes calldata, bytes32, bytes32) external pure {
        while (true) {}
    }
}

/// @notice Returns (or reverts with) a very large buffer, hoping the oracle copies it.
contract HugeReturnConsumer is IAIOracleConsumer {
    bool public immutable REVERTS;

    constructor(bool reverts) {
        REVERTS = reverts;
    }

    function onOracleResult(bytes32, uint8, uint16, bytes calldata, bytes32, bytes32) external view {
        bool reverts = REVERTS;
        assembly {
            let size := 200000
            if reverts { revert(0, size) }
            return(0, size)
        }
    }
}

/// @notice Re-enters the oracle from its callback: fulfills the same request again, then cancels it.
contract ReentrantConsumer is IAIOracleConsumer {
    AIOracle public immutable ORACLE;
    Response private _response;
    Commitment private _commitment;
    bytes private _signature;
    bool public reentrySucceeded;
    uint256 public calls;

    constructor(AIOracle oracle) {
        ORACLE = oracle;
    }

    function arm(Response calldata r, Commitment calldata c, bytes calldata signature) external {
        _response = r;
        _commitment = c;
        _signature = signature;
    }

    function onOracleResult(bytes32 requestId, uint8, uint16, bytes calldata, bytes32, bytes32) external {
        ++calls;
        try ORACLE.fulfill(_response, _commitment, _signature) {
            reentrySucceeded = true;
        } catch {}
        try ORACLE.cancel(requestId, _commitment) {
            reentrySucceeded = true;
        } catch {}
    }
}

/// @notice The least an AIConsumer can be: asks with the caller's ETH or its own, records what arrives.
contract PlainConsumer is AIConsumer {
    uint256 public delivered;

    constructor(AIOracle oracle) AIConsumer(oracle) {}

    function ask(RequestParams memory params) external payable returns (bytes32) {
        return _requestAI(params, msg.value, msg.sender);
    }

    /// @dev Pays `payment` out of this contract's own balance, for `payer`.
    function askFromBalance(RequestParams memory params, uint256 payment, address payer) external returns (bytes32) {
        return _requestAI(params, payment, payer);
    }

    function _onOracleResult(bytes32, uint8, uint16, bytes calldata, bytes32, bytes32) internal override {
        ++delivered;
    }
}

/// @notice A payer that cannot receive ETH (a contract wallet without a receive function, say): it asks
/// through a consumer and later names where its refund goes.
contract EthRefusingPayer {
    error NoEthHere();

    function ask(PlainConsumer c, RequestParams calldata params) external payable returns (bytes32) {
        return c.ask{value: msg.value}(params);
    }

    function reclaimTo(AIConsumer c, bytes32 id, Commitment calldata commitment, address payable to) external {
        c.reclaimFee(id, commitment, to);
    }

    function withdrawRefund(AIConsumer c, address payable to) external {
        c.withdrawRefund(to);
    }

    receive() external payable {
        revert NoEthHere();
    }
}
