// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {OracleTypes, PolicyClass} from "./OracleTypes.sol";
import {IAIOracleErrors} from "./interfaces/IAIOracleErrors.sol";

/// @title ModelSpec
/// @notice Checks the shape of a model spec and finds its fee class. The daemon parses the same
/// grammar (oracle/protocol.py) and decides which deployments it names; the contract only refuses
/// what no daemon could read, so a requester learns at once rather than after paying.
///
/// Grammar (ASCII, no spaces):
///   spec   = target *( ";" option )
///   target = "cheapest" / "fastest" / "best" / "ensemble:" DIGIT(2-9) / id *( "," id )   ; <= 8 ids
///   id     = 1*( ALPHA / DIGIT / "." / "_" / "-" / "/" / ":" / "+" / at-sign )
///   option = key "=" value ; key = 1*( a-z / "_" ) ; value = 1*( ALPHA / DIGIT / "." / "_" / "-" / "+" )
/// Each key appears at most once: "cheapest;max_price=1;max_price=2" has no one meaning.
/// Examples: "gpt-4o-2024-08-06", "claude-sonnet-4-5-20250929,gemini-2.5-pro",
/// "cheapest;max_price=20000;needs=json_schema+seed", "ensemble:3".
library ModelSpec {
    // Its errors, {IAIOracleErrors.InvalidModelSpec} and {IAIOracleErrors.DuplicateModelSpecOption}, are
    // the oracle's: declared once, in the ABI consumers compile against.

    /// @return cls the fee class; `k` the ensemble size (1 unless Ensemble)
    function parse(bytes calldata s) internal pure returns (PolicyClass cls, uint256 k) {
        uint256 n = s.length;
        uint256 end = _next(s, 0, n);
        (cls, k) = _target(s[0:end]);
        if (end == n) return (cls, k);
        // An option takes at least two bytes and its ";": the keys seen fit in (n - end) / 4 + 1 slots.
        bytes32[] memory keys = new bytes32[]((n - end) / 4 + 1);
        uint256 count = 0;
        while (end < n) {
            uint256 start = end + 1;
            end = _next(s, start, n);
            bytes32 key = _option(s[start:end], start);
            for (uint256 j = 0; j < count; ++j) {
                if (keys[j] == key) revert IAIOracleErrors.DuplicateModelSpecOption(start);
            }
            keys[count++] = key;
        }
    }

    /// @dev Index of the next ";" at or after `i`, or `n`.
    function _next(bytes calldata s, uint256 i, uint256 n) private pure returns (uint256) {
        while (i < n && s[i] != ";") ++i;
        return i;
    }

    function _target(bytes calldata t) private pure returns (PolicyClass, uint256) {
        bytes32 h = keccak256(t);
        if (h == keccak256("cheapest")) return (PolicyClass.Cheapest, 1);
        if (h == keccak256("fastest")) return (PolicyClass.Fastest, 1);
        if (h == keccak256("best")) return (PolicyClass.Best, 1);
        if (t.length >= 9 && keccak256(t[0:9]) == keccak256("ensemble:")) {
            if (t.length != 10 || t[9] < "2" || t[9] > "9") revert IAIOracleErrors.InvalidModelSpec(9);
            return (PolicyClass.Ensemble, uint8(t[9]) - 0x30); // ASCII digit to its value
        }
        uint256 ids = 1;
        uint256 idStart = 0;
        for (uint256 i = 0; i < t.length; ++i) {
            bytes1 c = t[i];
            if (c == ",") {
                if (i == idStart || ++ids > OracleTypes.MAX_MODEL_FALLBACKS) revert IAIOracleErrors.InvalidModelSpec(i);
                idStart = i + 1;
            } else if (!isIn(ID_CHARS, c)) {
                revert IAIOracleErrors.InvalidModelSpec(i);
            }
        }
        if (t.length == idStart) revert IAIOracleErrors.InvalidModelSpec(t.length);
        return (PolicyClass.Exact, 1);
    }

    /// @dev Checks one `key=value` option and returns the hash of its key.
    function _option(bytes calldata o, uint256 offset) private pure returns (bytes32 key) {
        uint256 i = 0;
        while (i < o.length && isIn(KEY_CHARS, o[i])) ++i;
        if (i == 0 || i == o.length || o[i] != "=") revert IAIOracleErrors.InvalidModelSpec(offset + i);
        key = keccak256(o[0:i]);
        uint256 valueStart = ++i;
        for (; i < o.length; ++i) {
            if (!isIn(VALUE_CHARS, o[i])) revert IAIOracleErrors.InvalidModelSpec(offset + i);
        }
        if (i == valueStart) revert IAIOracleErrors.InvalidModelSpec(offset + i);
    }

    // Character classes as 256-bit sets indexed by byte value: one shift and one AND per byte.
    uint256 internal constant LOWER = ((1 << 26) - 1) << 0x61; // a-z
    uint256 internal constant UPPER = ((1 << 26) - 1) << 0x41; // A-Z
    uint256 internal constant DIGIT = ((1 << 10) - 1) << 0x30; // 0-9
    uint256 internal constant KEY_CHARS = LOWER | (1 << 0x5f); // a-z _
    uint256 internal constant VALUE_CHARS = LOWER | UPPER | DIGIT | (1 << 0x2e) | (1 << 0x5f) | (1 << 0x2d) | (1 << 0x2b);
    uint256 internal constant ID_CHARS = VALUE_CHARS | (1 << 0x2f) | (1 << 0x3a) | (1 << 0x40); // also / : and at-sign
    /// @dev Characters of an ABI tuple type string besides parentheses: a-z 0-9 , [ ]
    uint256 internal constant ABI_TYPE_CHARS = LOWER | DIGIT | (1 << 0x2c) | (1 << 0x5b) | (1 << 0x5d);

    function isIn(uint256 set, bytes1 c) internal pure returns (bool) {
        return (set >> uint8(c)) & 1 == 1;
    }
}
