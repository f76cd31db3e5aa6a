// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {OracleFixture} from "../../kit/OracleFixture.sol";
import {RecordingConsumer} from "./Consumers.sol";
import {RequestParams, ResultSpec, ResultType, Commitment} from "../../src/OracleTypes.sol";

/// @notice The kit's fixture plus what the oracle's own tests share: a funded requester and relayer, a
/// second key that is not registered, a consumer that records every callback, and ready-made params.
abstract contract OracleTestBase is OracleFixture {
    uint256 internal constant OTHER_KEY = 0xB0B;
    address internal constant REQUESTER = address(0x10000C);
    address internal constant RELAYER = address(0x10000D);

    RecordingConsumer internal consumer;

    function setUp() public virtual override {
        super.setUp();
        consumer = new RecordingConsumer();
        vm.deal(REQUESTER, 1_000 ether);
        vm.deal(RELAYER, 1 ether);
    }

    function textParams(address callback) internal view returns (RequestParams memory p) {
        ResultSpec memory r;
        r.kind = uint8(ResultType.Text);
        r.maxBytes = 1_024;
        p = RequestParams({
            callback: callback,
            callbackGasLimit: 300_000,
            deadline: uint64(block.timestamp + 1 hours),
            maxTokens: 256,
            temperature: 0,
            seed: 7,
            modelSpec: "gpt-4o-2024-08-06",
            prompt: "Summarise the proposal.",
            result: r
        });
    }

    function uintParams(address callback, uint256 lo, uint256 hi) internal view returns (RequestParams memory p) {
        p = textParams(callback);
        p.result.kind = uint8(ResultType.Uint);
        p.result.maxBytes = 0;
        p.result.min = lo;
        p.result.max = hi;
    }

    /// @dev Requests `p` from REQUESTER paying exactly the quote.
    function request(RequestParams memory p) internal returns (bytes32 id, Commitment memory c) {
        uint256 fee = quoteOf(p);
        vm.prank(REQUESTER);
        id = oracle.request{value: fee}(p);
        c = commitmentOf(p, REQUESTER, fee);
    }
}
