"""Trading agent: asks its RiskSentinels for risk scores on a schedule and keeps a position in each
sentinel's vault by the answers, with hysteresis (`python -m bots.trading_agent --help`)."""
