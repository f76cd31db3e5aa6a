// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {Test} from "../kit/Test.sol";
import {ModelSpec} from "../src/ModelSpec.sol";
import {IAIOracleErrors} from "../src/interfaces/IAIOracleErrors.sol";
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
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.InvalidModelSpec.selector, offset));
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

    function test_an_option_given_twice_names_its_offset() public {
        _twice("cheapest;max_price=1;max_price=2", 21);
        _twice("best;needs=seed;max_price=5;needs=seed", 28);
        _twice("a,b;data=zdr;data=zdr", 13);
        _class("cheapest;max_price=1;max_prices=2", PolicyClass.Cheapest, 1); // another key
        _class("cheapest;max_price=1;needs=seed;data=zdr", PolicyClass.Cheapest, 1);
        _bad("cheapest;max_price=1;max_price=", 31); // the grammar is checked first, as in Python
    }

    function _twice(string memory spec, uint256 offset) private {
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.DuplicateModelSpecOption.selector, offset));
        h.parse(spec);
    }

    function testFuzz_parse_never_panics(bytes calldata raw) public view {
        // any input either parses or reverts with one of the spec's errors, never anything else
        try h.parse(string(raw)) returns (PolicyClass, uint256 k) {
            assertTrue(k >= 1 && k <= 9, "k in range");
        } catch (bytes memory err) {
            assertTrue(
                bytes4(err) == IAIOracleErrors.InvalidModelSpec.selector
                    || bytes4(err) == IAIOracleErrors.DuplicateModelSpecOption.selector,
                "only the spec's errors"
            );
        }
    }

    function testFuzz_options_repeat_only_when_a_key_does(uint8 a, uint8 b, uint8 c) public view {
        string[4] memory keys = ["max_price", "needs", "data", "max_price_"];
        (a, b, c) = (uint8(a % 4), uint8(b % 4), uint8(c % 4));
        bytes memory spec = abi.encodePacked("cheapest;", keys[a], "=1;", keys[b], "=2;", keys[c], "=3");
        bool repeats = a == b || a == c || b == c;
        try h.parse(string(spec)) {
            assertTrue(!repeats, "a repeated key was accepted");
        } catch (bytes memory err) {
            assertTrue(repeats, "distinct keys were refused");
            assertEq(bytes4(err), IAIOracleErrors.DuplicateModelSpecOption.selector, "as a repeat");
        }
    }
}
