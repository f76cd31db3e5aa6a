// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

/// @title Types shared by the oracle contracts and the off-chain daemon
/// @notice Everything the daemon and the contracts must agree on lives here: request fields, result
/// types and their bounds, statuses and reason codes, the commitment formula and the EIP-712 types.
/// `make abi` reads this file into `oracle/abi/protocol.json`, which the Python side is built on.

/// @notice Kinds of typed result. A consumer decodes `result` with `abi.decode` only:
/// Text -> (string), Bool -> (bool), Uint -> (uint256), Int -> (int256), Choice -> (uint256 index),
/// Json -> (string, JSON text), Abi -> the tuple named by `ResultSpec.abiType`.
enum ResultType {
    Text,
    Bool,
    Uint,
    Int,
    Choice,
    Json,
    Abi
}

/// @notice Outcome of a request. Zero is deliberately invalid so a zeroed struct never reads as success.
enum Status {
    None,
    Success,
    Failure
}

/// @notice Why a request failed. `None` only with `Status.Success`. Codes are only ever appended: a
/// consumer compiled against an older list still reads every code it knows the same way.
enum ReasonCode {
    None,
    Malformed, // the model's answer did not fit the result type, even after a retry
    ModelRefused, // the model declined to answer
    ContentFiltered, // a provider's safety filter stopped the answer
    Truncated, // the answer hit the token limit before it was complete
    ProvidersUnavailable, // every eligible deployment failed or was unavailable
    DeadlineTooShort, // no deployment could answer before the deadline
    UnknownModel, // the model spec names no deployment the operator offers
    InvalidModelSpec, // the model spec could not be parsed off-chain
    InvalidPrompt, // the prompt is not valid UTF-8 or is otherwise unusable
    PromptTooLarge, // the prompt does not fit any eligible model's context window
    FeeTooLow, // the escrowed fee does not cover gas plus the model's price
    BudgetExhausted, // the operator's spending budget for this requester or provider is used up
    PaymentFailed, // paying the provider failed
    Unsupported, // no eligible deployment supports what the result type needs
    InternalError, // the daemon could not complete the request for a reason of its own
    PriceCapTooLow, // the model spec's max_price is below what every eligible deployment may cost
    DataPolicyUnavailable // no deployment keeps to the data policy the model spec asks for (`data=`)
}

/// @notice Fee classes, chosen from the model spec's first token.
enum PolicyClass {
    Exact, // an exact model id or an ordered fallback list
    Cheapest,
    Fastest,
    Best,
    Ensemble // `ensemble:k`: k providers, combined; model part of the fee times k
}

/// @notice Bounds of the typed result.
/// @dev `kind` is a uint8 rather than `ResultType` so an unknown kind reverts with
/// {IAIOracle.UnknownResultType} instead of the ABI decoder's bare revert.
/// - Text, Json: `maxBytes` in 1..limit, the most UTF-8 bytes of the text; Abi: the most bytes of the
///   tuple's ABI encoding. min, max zero.
/// - Uint: `min <= max` as uint256. Int: `int256(min) <= int256(max)` (two's-complement bits).
/// - Choice: 2..limit `labels`, each 1..64 bytes and each given once; the result is the chosen index.
/// - Abi: `abiType` a tuple type string such as "(string,uint8,string)".
/// Fields a kind does not use must be zero or empty.
struct ResultSpec {
    uint8 kind;
    uint32 maxBytes;
    uint256 min;
    uint256 max;
    string[] labels;
    string abiType;
}

/// @notice What a requester asks for. Emitted whole in {IAIOracle.Requested}; only its hash is stored.
/// @dev `temperature` is in hundredths (0..200 = 0.00..2.00). `deadline` is a unix time after which the
/// request can no longer be fulfilled and the requester can be refunded.
struct RequestParams {
    address callback;
    uint32 callbackGasLimit;
    uint64 deadline;
    uint32 maxTokens;
    uint16 temperature;
    uint64 seed;
    string modelSpec;
    bytes prompt;
    ResultSpec result;
}

/// @notice The preimage of a stored commitment; passed back on fulfill and cancel.
/// @dev `maxResultBytes` is the longest result a response may carry, fixed at request time by
/// {OracleTypes.maxResultBytes}: the commitment is all the oracle keeps of a request, so the bound
/// travels in it.
struct Commitment {
    address requester;
    address callback;
    uint32 callbackGasLimit;
    uint64 deadline;
    uint64 maxResultBytes;
    uint256 fee;
    bytes32 paramsHash;
}

/// @notice The response the fulfillment signer signs with EIP-712.
/// @dev `modelUsed` is keccak256 of the model id, or of the sorted ids joined by "," for an ensemble;
/// `receiptHash` is keccak256 of the canonical JSON receipt that shows how the answer was made.
struct Response {
    bytes32 requestId;
    bytes32 commitment;
    uint8 status;
    uint16 reasonCode;
    bytes result;
    bytes32 modelUsed;
    bytes32 receiptHash;
}

/// @notice A result sold off-chain (agent API) that a consumer contract may accept once.
/// @dev Bound to one consumer and one `resultId`; useless after `validUntil`. `queryHash` is
/// keccak256(abi.encode(modelSpec, prompt, resultSpec)) of the question answered, so a consumer can
/// check the result answers the question it wants answered.
struct OffchainResult {
    bytes32 resultId;
    address consumer;
    bytes32 queryHash;
    uint8 status;
    uint16 reasonCode;
    bytes result;
    bytes32 modelUsed;
    bytes32 receiptHash;
    uint64 validUntil;
}

/// @notice Fee schedule of one policy class, in wei.
/// fee = k * (baseFee + perOutputToken * maxTokens) + perCallbackGas * callbackGasLimit, k = 1 unless
/// the class is Ensemble.
struct FeeSchedule {
    uint96 baseFee;
    uint64 perCallbackGas;
    uint96 perOutputToken;
}

/// @notice Owner-set limits on requests.
struct Limits {
    uint32 maxCallbackGas;
    uint32 maxPromptBytes;
    uint32 maxResultBytes;
    uint32 maxTokens;
    uint32 maxDeadlineWindow;
    uint16 maxModelSpecBytes;
    uint8 maxChoiceLabels;
}

/// @title OracleTypes
/// @notice Hashes and formulas both sides compute.
library OracleTypes {
    string internal constant EIP712_NAME = "AIOracle";
    string internal constant EIP712_VERSION = "1";

    bytes32 internal constant RESPONSE_TYPEHASH = keccak256(
        "Response(bytes32 requestId,bytes32 commitment,uint8 status,uint16 reasonCode,bytes result,bytes32 modelUsed,bytes32 receiptHash)"
    );

    bytes32 internal constant OFFCHAIN_RESULT_TYPEHASH = keccak256(
        "OffchainResult(bytes32 resultId,address consumer,bytes32 queryHash,uint8 status,uint16 reasonCode,bytes result,bytes32 modelUsed,bytes32 receiptHash,uint64 validUntil)"
    );

    /// @dev Longest choice label and ABI type string, fixed so validation stays bounded.
    uint256 internal constant MAX_LABEL_BYTES = 64;
    uint256 internal constant MAX_ABI_TYPE_BYTES = 256;
    /// @dev Most model ids in a fallback list.
    uint256 internal constant MAX_MODEL_FALLBACKS = 8;
    /// @dev Temperature is in hundredths; 2.00 is the largest any supported provider accepts.
    uint16 internal constant MAX_TEMPERATURE = 200;
    /// @dev A Text or Json result is `abi.encode(string)` and an Abi result a tuple's encoding: offset and
    /// length words plus padding come on top of the `maxBytes` content bytes.
    uint256 internal constant RESULT_ENCODING_OVERHEAD = 96;
    /// @dev Bool, Uint, Int and Choice results are one ABI word.
    uint256 internal constant WORD_RESULT_BYTES = 32;

    /// @notice Request ids are unique across chains, deployments, requesters and requests.
    function requestId(uint256 chainId, address oracle, address requester, uint64 nonce)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(chainId, oracle, requester, nonce));
    }

    function paramsHash(RequestParams calldata params) internal pure returns (bytes32) {
        return keccak256(abi.encode(params));
    }

    /// @notice The longest result a response to a request for `r` may carry: one word for Bool, Uint,
    /// Int and Choice; `maxBytes` plus the ABI framing for Text, Json and Abi.
    function maxResultBytes(ResultSpec calldata r) internal pure returns (uint64) {
        uint8 kind = r.kind;
        if (kind == uint8(ResultType.Text) || kind == uint8(ResultType.Json) || kind == uint8(ResultType.Abi)) {
            return uint64(r.maxBytes + RESULT_ENCODING_OVERHEAD);
        }
        return uint64(WORD_RESULT_BYTES);
    }

    /// @notice The value stored per open request: keccak256(abi.encode(Commitment)).
    /// @dev Hashes the calldata words as they are, without decoding each field: a field with dirty high
    /// bits hashes differently from its clean value, so it can only fail to match a stored commitment.
    function commitmentHash(Commitment calldata c) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, c, 0xe0) // seven words: a static struct is its fields in order
            h := keccak256(ptr, 0xe0)
        }
    }

    function responseStructHash(Response calldata r, bytes32 resultHash) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                RESPONSE_TYPEHASH,
                r.requestId,
                r.commitment,
                r.status,
                r.reasonCode,
                resultHash,
                r.modelUsed,
                r.receiptHash
            )
        );
    }

    function offchainResultStructHash(OffchainResult calldata r) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                OFFCHAIN_RESULT_TYPEHASH,
                r.resultId,
                r.consumer,
                r.queryHash,
                r.status,
                r.reasonCode,
                keccak256(r.result),
                r.modelUsed,
                r.receiptHash,
                r.validUntil
            )
        );
    }
}
