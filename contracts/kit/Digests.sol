// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {OracleTypes, Response} from "../src/OracleTypes.sol";

/// @notice EIP-712 digests computed from the specification, independently of the oracle's own code.
library Digests {
    function response(Response memory r, uint256 chainId, address verifyingContract) internal pure returns (bytes32) {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("AIOracle"),
                keccak256("1"),
                chainId,
                verifyingContract
            )
        );
        bytes32 structHash = keccak256(
            abi.encode(
                OracleTypes.RESPONSE_TYPEHASH,
                r.requestId,
                r.commitment,
                r.status,
                r.reasonCode,
                keccak256(r.result),
                r.modelUsed,
                r.receiptHash
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", domain, structHash));
    }
}
