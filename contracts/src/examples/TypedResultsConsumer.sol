// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {AIConsumer} from "../AIConsumer.sol";
import {AIOracle} from "../AIOracle.sol";
import {RequestParams, ResultSpec, ResultType, Status, OffchainResult} from "../OracleTypes.sol";

/// @title TypedResultsConsumer
/// @notice Shows how to decode every result type with `abi.decode` alone, and keeps what it decoded
/// so it can be read back. Its Abi requests use the tuple `(string,uint256,bool)`. It also accepts
/// results bought off-chain, but only for questions registered beforehand with {expectOffchain}.
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
    /// @notice Off-chain questions this contract will take answers to: query hash => result kind + 1.
    mapping(bytes32 queryHash => uint8 kindPlusOne) public expectedQuery;
    mapping(bytes32 resultId => Decoded) private _offchainDecoded;

    event ResultDecoded(bytes32 indexed requestId, uint8 status, uint16 reasonCode);

    constructor(AIOracle oracle) AIConsumer(oracle) {}

    /// @notice Ask the oracle; the whole `msg.value` is escrowed as the fee.
    function ask(RequestParams memory params) external payable returns (bytes32 requestId) {
        requestId = _requestAI(params, msg.value, msg.sender);
        kindOf[requestId] = params.result.kind;
    }

    /// @notice Register a question whose answer may be delivered off-chain with {acceptSignedResult}.
    function expectOffchain(string calldata modelSpec, bytes calldata prompt, ResultSpec calldata result) external {
        expectedQuery[queryHash(modelSpec, prompt, result)] = result.kind + 1;
    }

    function decoded(bytes32 requestId) external view returns (Decoded memory) {
        return _decoded[requestId];
    }

    function decodedOffchain(bytes32 resultId) external view returns (Decoded memory) {
        return _offchainDecoded[resultId];
    }

    function _acceptOffchainResult(OffchainResult calldata r) internal override {
        uint8 kindPlusOne = expectedQuery[r.queryHash];
        if (kindPlusOne == 0) revert UnexpectedQuery(r.queryHash);
        _decode(_offchainDecoded[r.resultId], kindPlusOne - 1, r.status, r.reasonCode, r.result, r.modelUsed,
            r.receiptHash);
    }

    function _onOracleResult(
        bytes32 requestId,
        uint8 status,
        uint16 reasonCode,
        bytes calldata result,
        bytes32 modelUsed,
        bytes32 receiptHash
    ) internal override {
        _decode(_decoded[requestId], kindOf[requestId], status, reasonCode, result, modelUsed, receiptHash);
        emit ResultDecoded(requestId, status, reasonCode);
    }

    function _decode(
        Decoded storage d,
        uint8 kind,
        uint8 status,
        uint16 reasonCode,
        bytes calldata result,
        bytes32 modelUsed,
        bytes32 receiptHash
    ) private {
        d.delivered = true;
        d.status = status;
        d.reasonCode = reasonCode;
        d.modelUsed = modelUsed;
        d.receiptHash = receiptHash;
        if (status != uint8(Status.Success)) return;

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
