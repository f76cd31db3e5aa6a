// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {Test} from "../kit/Test.sol";
import {TestUSD} from "../src/devnet/TestUSD.sol";

contract TestUSDTest is Test {
    TestUSD private token;
    uint256 private constant PAYER_KEY = 0xFEED;
    address private payer;
    address private constant PAY_TO = address(0x50001);

    bytes32 private constant TRANSFER_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );

    function setUp() public {
        vm.warp(1_700_000_000);
        token = new TestUSD(address(this));
        payer = vm.addr(PAYER_KEY);
        token.mint(payer, 100e6);
    }

    function _domain() private view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Test USD"),
                keccak256("2"),
                block.chainid,
                address(token)
            )
        );
    }

    function _sig(uint256 key, uint256 value, uint256 after_, uint256 before, bytes32 nonce)
        private
        view
        returns (uint8 v, bytes32 r, bytes32 s)
    {
        bytes32 structHash = keccak256(abi.encode(TRANSFER_TYPEHASH, payer, PAY_TO, value, after_, before, nonce));
        return vm.sign(key, keccak256(abi.encodePacked("\x19\x01", _domain(), structHash)));
    }

    function test_six_decimals_and_usdc_domain() public view {
        assertEq(uint256(token.decimals()), 6, "decimals");
        (, string memory name, string memory version,,,,) = token.eip712Domain();
        assertEq(name, "Test USD", "name");
        assertEq(version, "2", "version");
    }

    function test_transfer_with_authorization_moves_exactly_the_value_once() public {
        (uint8 v, bytes32 r, bytes32 s) = _sig(PAYER_KEY, 1_500, 0, block.timestamp + 60, "n1");
        token.transferWithAuthorization(payer, PAY_TO, 1_500, 0, block.timestamp + 60, "n1", v, r, s);
        assertEq(token.balanceOf(PAY_TO), 1_500, "paid");
        assertTrue(token.authorizationState(payer, "n1"), "nonce used");
        vm.expectRevert(bytes("FiatTokenV2: authorization is used or canceled"));
        token.transferWithAuthorization(payer, PAY_TO, 1_500, 0, block.timestamp + 60, "n1", v, r, s);
    }

    function test_packed_signature_overload() public {
        (uint8 v, bytes32 r, bytes32 s) = _sig(PAYER_KEY, 7, 0, block.timestamp + 60, "n2");
        token.transferWithAuthorization(payer, PAY_TO, 7, 0, block.timestamp + 60, "n2", abi.encodePacked(r, s, v));
        assertEq(token.balanceOf(PAY_TO), 7, "paid");
    }

    function test_usdc_revert_strings() public {
        (uint8 v, bytes32 r, bytes32 s) = _sig(0xBAD, 1, 0, block.timestamp + 60, "n3");
        vm.expectRevert(bytes("FiatTokenV2: invalid signature"));
        token.transferWithAuthorization(payer, PAY_TO, 1, 0, block.timestamp + 60, "n3", v, r, s);

        (v, r, s) = _sig(PAYER_KEY, 1, 0, block.timestamp, "n4");
        vm.expectRevert(bytes("FiatTokenV2: authorization is expired"));
        token.transferWithAuthorization(payer, PAY_TO, 1, 0, block.timestamp, "n4", v, r, s);

        (v, r, s) = _sig(PAYER_KEY, 1, block.timestamp + 10, block.timestamp + 60, "n5");
        vm.expectRevert(bytes("FiatTokenV2: authorization is not yet valid"));
        token.transferWithAuthorization(payer, PAY_TO, 1, block.timestamp + 10, block.timestamp + 60, "n5", v, r, s);

        (v, r, s) = _sig(PAYER_KEY, 101e6, 0, block.timestamp + 60, "n6");
        vm.expectRevert(bytes("ERC20: transfer amount exceeds balance"));
        token.transferWithAuthorization(payer, PAY_TO, 101e6, 0, block.timestamp + 60, "n6", v, r, s);
    }
}
