// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {AIConsumer} from "../AIConsumer.sol";
import {AIOracle} from "../AIOracle.sol";
import {RequestParams, ResultType, Status} from "../OracleTypes.sol";

/// @title TypedResultsConsumer
/// @notice Shows how to decode every result type with `abi.decode` alone, and keeps what it decoded
/// so it can be read back. Its Abi requests use the tuple `(string,uint256,bool)`.
contract TypedResultsConsumer is AIConsumer {
    struct Decoded {
        bool delivered;
        uint8 status;
        uint16 reasonCode;
        string text; // Text, Json and the string of the Abi tuple
        bool flag; // Bool and the bool of the Abi tuple
        uint256 unsignedValue; // Uint, Choice (the index) and the uint of the Abi tuple
        int256 signedValue; // Int
        bytes32 modelUsed;
        bytes32 receiptHash;
    }

    string public constant ABI_TUPLE = "(string,uint256,bool)";

    mapping(bytes32 requestId => uint8 kind) public kindOf;
    mapping(bytes32 requestId => Decoded) private _decoded;

    event ResultDecoded(bytes32 indexed requestId, uint8 status, uint16 reasonCode);

    constructor(AIOracle oracle) AIConsumer(oracle) {}

    /// @notice Ask the oracle; the whole `msg.value` is escrowed as the fee.
    function ask(RequestParams memory params) external payable returns (bytes32 requestId) {
        requestId = _requestAI(params, msg.value);
        kindOf[requestId] = params.result.kind;
    }

    function decoded(bytes32 requestId) external view returns (Decoded memory) {
        return _decoded[requestId];
    }

    function _onOracleResult(
        bytes32 requestId,
        uint8 status,
        uint16 reasonCode,
        bytes calldata result,
        bytes32 modelUsed,
        bytes32 receiptHash
    ) internal override {
        Decoded storage d = _decoded[requestId];
        d.delivered = true;
        d.status = status;
        d.reasonCode = reasonCode;
        d.modelUsed = modelUsed;
        d.receiptHash = receiptHash;
        emit ResultDecoded(requestId, status, reasonCode);
        if (status != uint8(Status.Success)) return;

        uint8 kind = kindOf[requestId];
        if (kind == uint8(ResultType.Text) || kind == uint8(ResultType.Json)) {
            d.text = abi.decode(result, (string));
        } else if (kind == uint8(ResultType.Bool)) {
            d.flag = abi.decode(result, (bool));
        } else if (kind == uint8(ResultType.Uint) || kind == uint8(ResultType.Choice)) {
            d.unsignedValue = abi.decode(result, (uint256));
        } else if (kind == uint8(ResultType.Int)) {
            d.signedValue = abi.decode(result, (int256));
        } else if (kind == uint8(ResultType.Abi)) {
            (d.text, d.unsignedValue, d.flag) = abi.decode(result, (string, uint256, bool));
        }
    }
}
