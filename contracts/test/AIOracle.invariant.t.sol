// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {Test} from "../kit/Test.sol";
import {Digests} from "../kit/Digests.sol";
import {OracleTestBase} from "./utils/OracleTestBase.sol";
import {RevertingConsumer, GasBurningConsumer, HugeReturnConsumer, ReentrantConsumer} from "./utils/Consumers.sol";
import {IAIOracleConsumer} from "../src/interfaces/IAIOracleConsumer.sol";
import {AIOracle} from "../src/AIOracle.sol";
import {
    RequestParams, ResultSpec, ResultType, Commitment, Response, Status, ReasonCode, OracleTypes
} from "../src/OracleTypes.sol";

/// @notice Counts callbacks per request, so a second delivery would show.
contract CountingConsumer is IAIOracleConsumer {
    mapping(bytes32 => uint256) public deliveries;

    function onOracleResult(bytes32 requestId, uint8, uint16, bytes calldata, bytes32, bytes32) external {
        ++deliveries[requestId];
    }
}

/// @notice Drives the oracle through random requests, fulfillments (single, batched, replayed,
/// relayed by strangers, signed for other domains), cancels, withdrawals and time, keeping ghost books.
contract OracleHandler is Test {
    AIOracle public immutable oracle;
    uint256 public immutable signerKey;
    address public immutable payee;
    CountingConsumer public immutable counting;
    address[] public consumers;
    address[3] public requesters = [address(0x20001), address(0x20002), address(0x20003)];
    address public constant STRANGER = address(0x20009);

    bytes32[] public ids;
    mapping(bytes32 => Commitment) internal _commitmentOf;
    mapping(bytes32 => uint256) public settlements; // fulfillments + cancels seen succeed per id

    uint256 public received;
    uint256 public withdrawn;
    uint256 public foreignSignaturesAccepted;
    uint256 public replaysAccepted;

    constructor(AIOracle oracle_, uint256 signerKey_, address payee_) {
        oracle = oracle_;
        signerKey = signerKey_;
        payee = payee_;
        counting = new CountingConsumer();
        consumers.push(address(counting));
        consumers.push(address(new RevertingConsumer()));
        consumers.push(address(new GasBurningConsumer()));
        consumers.push(address(new HugeReturnConsumer(false)));
        consumers.push(address(new ReentrantConsumer(oracle_)));
    }

    function idCount() external view returns (uint256) {
        return ids.length;
    }

    function commitmentOf(bytes32 id) external view returns (Commitment memory) {
        return _commitmentOf[id];
    }

    function request(uint256 seed, uint256 extra) external {
        address requester = requesters[seed % 3];
        ResultSpec memory result;
        result.kind = uint8(ResultType.Uint);
        result.max = 100;
        RequestParams memory p = RequestParams({
            callback: consumers[(seed / 3) % consumers.length],
            callbackGasLimit: uint32(bound(seed, 20_000, 200_000)),
            deadline: uint64(block.timestamp + bound(seed >> 8, 1, 2 hours)),
            maxTokens: 16,
            temperature: 0,
            seed: 0,
            modelSpec: "cheapest",
            prompt: "risk?",
            result: result
        });
        uint256 fee = oracle.quote(p.modelSpec, p.maxTokens, p.callbackGasLimit) + bound(extra, 0, 1 ether);
        vm.deal(requester, fee);
        vm.prank(requester);
        bytes32 id = oracle.request{value: fee}(p);
        received += fee;
        ids.push(id);
        // a uint result: one ABI word
        _commitmentOf[id] =
            Commitment(requester, p.callback, p.callbackGasLimit, p.deadline, 32, fee, keccak256(abi.encode(p)));
    }

    function _pick(uint256 seed) private view returns (bytes32 id, Commitment memory c, bool ok) {
        if (ids.length == 0) return (id, c, false);
        id = ids[seed % ids.length];
        return (id, _commitmentOf[id], true);
    }

    function _response(bytes32 id, Commitment memory c, uint256 seed) private pure returns (Response memory r) {
        bool fails = seed % 4 == 0;
        r = Response({
            requestId: id,
            commitment: keccak256(abi.encode(c)),
            status: fails ? uint8(Status.Failure) : uint8(Status.Success),
            reasonCode: fails ? uint16(ReasonCode.ProvidersUnavailable) : 0,
            result: fails ? bytes("") : abi.encode(seed % 101),
            modelUsed: keccak256("m"),
            receiptHash: keccak256(abi.encode(id, seed))
        });
    }

    function _sign(Response memory r, uint256 chainId, address verifying) private view returns (bytes memory) {
        (uint8 v, bytes32 rr, bytes32 s) = vm.sign(signerKey, Digests.response(r, chainId, verifying));
        return abi.encodePacked(rr, s, v);
    }

    function fulfill(uint256 seed) external {
        (bytes32 id, Commitment memory c, bool ok) = _pick(seed);
        if (!ok) return;
        Response memory r = _response(id, c, seed);
        bool wasOpen = oracle.commitments(id) != bytes32(0);
        vm.prank(STRANGER);
        try oracle.fulfill{gas: 2_000_000}(r, c, _sign(r, block.chainid, address(oracle))) {
            ++settlements[id];
            if (!wasOpen) ++replaysAccepted;
        } catch {}
    }

    function fulfillBatch(uint256 seed, uint8 size) external {
        if (ids.length == 0) return;
        uint256 n = bound(size, 1, 8);
        Response[] memory rs = new Response[](n);
        Commitment[] memory cs = new Commitment[](n);
        bytes[] memory sigs = new bytes[](n);
        bool[] memory open = new bool[](n);
        for (uint256 i = 0; i < n; ++i) {
            (bytes32 id, Commitment memory c,) = _pick(uint256(keccak256(abi.encode(seed, i / 2)))); // pairs repeat ids
            rs[i] = _response(id, c, seed + i);
            cs[i] = c;
            sigs[i] = _sign(rs[i], block.chainid, address(oracle));
            open[i] = oracle.commitments(id) != bytes32(0);
        }
        try oracle.fulfillBatch{gas: 8_000_000}(rs, cs, sigs) {
            for (uint256 i = 0; i < n; ++i) {
                if (open[i] && oracle.commitments(rs[i].requestId) == bytes32(0)) {
                    ++settlements[rs[i].requestId];
                    // mark the rest of the batch's copies as already settled
                    for (uint256 j = i + 1; j < n; ++j) if (rs[j].requestId == rs[i].requestId) open[j] = false;
                }
            }
        } catch {}
    }

    function fulfillForeignDomain(uint256 seed) external {
        (bytes32 id, Commitment memory c, bool ok) = _pick(seed);
        if (!ok) return;
        Response memory r = _response(id, c, seed);
        bytes memory sig = seed % 2 == 0
            ? _sign(r, block.chainid + 1 + (seed % 1000), address(oracle))
            : _sign(r, block.chainid, address(uint160(seed)));
        try oracle.fulfill(r, c, sig) {
            ++foreignSignaturesAccepted;
        } catch {}
    }

    function cancel(uint256 seed) external {
        (bytes32 id, Commitment memory c, bool ok) = _pick(seed);
        if (!ok) return;
        bool wasOpen = oracle.commitments(id) != bytes32(0);
        vm.prank(c.requester);
        try oracle.cancel(id, c) {
            ++settlements[id];
            if (!wasOpen) ++replaysAccepted;
        } catch {}
    }

    function warp(uint256 secs) external {
        vm.warp(block.timestamp + bound(secs, 1, 1 hours));
    }

    function withdraw(uint256 seed) external {
        address account = seed % 4 == 3 ? payee : requesters[seed % 3];
        uint256 amount = oracle.balanceOf(account);
        if (amount == 0) return;
        vm.prank(account);
        oracle.withdraw(payable(account));
        withdrawn += amount;
    }
}

contract AIOracleInvariantTest is OracleTestBase {
    OracleHandler private handler;

    function setUp() public override {
        super.setUp();
        handler = new OracleHandler(oracle, SIGNER_KEY, PAYEE);
        targetContract(address(handler));
        bytes4[] memory selectors = new bytes4[](7);
        selectors[0] = OracleHandler.request.selector;
        selectors[1] = OracleHandler.fulfill.selector;
        selectors[2] = OracleHandler.fulfillBatch.selector;
        selectors[3] = OracleHandler.fulfillForeignDomain.selector;
        selectors[4] = OracleHandler.cancel.selector;
        selectors[5] = OracleHandler.warp.selector;
        selectors[6] = OracleHandler.withdraw.selector;
        targetSelector(FuzzSelector(address(handler), selectors));
    }

    /// @notice Every request is fulfilled or cancelled at most once, and delivered at most once.
    function invariant_settled_at_most_once() public view {
        uint256 n = handler.idCount();
        CountingConsumer counting = handler.counting();
        for (uint256 i = 0; i < n; ++i) {
            bytes32 id = handler.ids(i);
            assertLe(handler.settlements(id), 1, "settled twice");
            assertLe(counting.deliveries(id), 1, "delivered twice");
            bool open = oracle.commitments(id) != bytes32(0);
            assertEq(handler.settlements(id), open ? 0 : 1, "open iff never settled");
        }
        assertEq(handler.replaysAccepted(), 0, "a settled request was settled again");
    }

    /// @notice credited + refunded + held = received (less what was withdrawn), to the wei.
    function invariant_escrow_conserved() public view {
        uint256 held;
        uint256 n = handler.idCount();
        for (uint256 i = 0; i < n; ++i) {
            bytes32 id = handler.ids(i);
            if (oracle.commitments(id) != bytes32(0)) held += handler.commitmentOf(id).fee;
        }
        uint256 credited = oracle.balanceOf(PAYEE);
        for (uint256 i = 0; i < 3; ++i) credited += oracle.balanceOf(handler.requesters(i));
        assertEq(credited + held, handler.received() - handler.withdrawn(), "books balance");
        assertEq(address(oracle).balance, handler.received() - handler.withdrawn(), "ETH balance");
    }

    function invariant_no_signature_valid_on_another_domain() public view {
        assertEq(handler.foreignSignaturesAccepted(), 0, "foreign-domain signature accepted");
    }

    function invariant_relayer_never_credited() public view {
        assertEq(oracle.balanceOf(handler.STRANGER()), 0, "relayer credited");
    }
}
