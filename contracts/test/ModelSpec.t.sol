// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {Test} from "./utils/Test.sol";
import {ModelSpec} from "../src/ModelSpec.sol";
import {PolicyClass} from "../src/OracleTypes.sol";

contract ModelSpecHarness {
    function parse(string calldata spec) external pure returns (PolicyClass, uint256) {
        return ModelSpec.parse(bytes(spec));
    }
}

contract ModelSpecTest is Test {
    ModelSpecHarness private h = new ModelSpecHarness();

    function _class(string memory spec, PolicyClass cls, uint256 k) private view {
        (PolicyClass got, uint256 gotK) = h.parse(spec);
        assertEq(uint256(got), uint256(cls), spec);
        assertEq(gotK, k, spec);
    }

    function _bad(string memory spec, uint256 offset) private {
        vm.expectRevert(abi.encodeWithSelector(ModelSpec.InvalidModelSpec.selector, offset));
        h.parse(spec);
    }

    function test_valid_specs_and_their_classes() public view {
        _class("gpt-4o-2024-08-06", PolicyClass.Exact, 1);
        _class("meta-llama/llama-3.1-8b-instruct:free", PolicyClass.Exact, 1);
        _class("claude-sonnet-4-5-20250929,gemini-2.5-pro,gpt-4o-mini", PolicyClass.Exact, 1);
        _class("cheapest", PolicyClass.Cheapest, 1);
        _class("fastest;needs=json_schema+seed", PolicyClass.Fastest, 1);
        _class("best;max_price=250000", PolicyClass.Best, 1);
        _class("ensemble:3;max_price=9", PolicyClass.Ensemble, 3);
        _class("ensemble:9", PolicyClass.Ensemble, 9);
    }

    function test_malformed_specs_name_the_offset() public {
        _bad("", 0);
        _bad(",a", 0);
        _bad("a,", 2);
        _bad("a b", 1);
        _bad("ensemble:", 9);
        _bad("ensemble:10", 9);
        _bad("ensemble:1", 9);
        _bad("cheapest;", 9);
        _bad("cheapest;=1", 9);
        _bad("cheapest;Max=1", 9);
        _bad("cheapest;max_price=", 19);
        _bad("cheapest;max_price=1/2", 20);
        _bad("a,b,c,d,e,f,g,h,i", 15); // nine fallbacks
        _bad(unicode"gpt-4o\u00e9", 6);
    }

    function testFuzz_parse_never_panics(bytes calldata raw) public view {
        // any input either parses or reverts with InvalidModelSpec, never anything else
        try h.parse(string(raw)) returns (PolicyClass, uint256 k) {
            assertTrue(k >= 1 && k <= 9, "k in range");
        } catch (bytes memory err) {
            assertEq(bytes4(err), ModelSpec.InvalidModelSpec.selector, "only InvalidModelSpec");
        }
    }
}
