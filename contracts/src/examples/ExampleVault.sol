// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

/// @title ExampleVault
/// @notice A minimal ETH vault that a guardian (a RiskSentinel) can pause; only the owner resumes it.
contract ExampleVault is Ownable, Pausable {
    address public guardian;
    mapping(address account => uint256 amount) public deposits;

    error NotGuardian(address caller);
    error InsufficientDeposit(uint256 requested, uint256 available);
    error TransferFailed();

    event GuardianSet(address indexed guardian);
    event Deposited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);

    constructor(address owner_) Ownable(owner_) {}

    function setGuardian(address guardian_) external onlyOwner {
        guardian = guardian_;
        emit GuardianSet(guardian_);
    }

    function deposit() external payable whenNotPaused {
        deposits[msg.sender] += msg.value;
        emit Deposited(msg.sender, msg.value);
    }

    function withdraw(uint256 amount) external whenNotPaused {
        uint256 available = deposits[msg.sender];
        if (amount > available) revert InsufficientDeposit(amount, available);
        deposits[msg.sender] = available - amount;
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed();
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice Called by the guardian when the risk it watches crosses its bound.
    function pause() external {
        if (msg.sender != guardian && msg.sender != owner()) revert NotGuardian(msg.sender);
        _pause();
    }

    function unpause() external onlyOwner {
        _unpause();
    }
}
