"""Provider wire formats, one module each; `FORMATS` maps a deployment's `api` to its adapter."""

from oracle.router.adapters.anthropic import AnthropicMessages
from oracle.router.adapters.base import Call, ProviderReply, WireFormat, send
from oracle.router.adapters.gemini import GeminiGenerateContent
from oracle.router.adapters.openai import OpenAIChat

FORMATS: dict[str, WireFormat] = {"openai": OpenAIChat(), "anthropic": AnthropicMessages(),
                                  "gemini": GeminiGenerateContent()}

__all__ = ["FORMATS", "Call", "ProviderReply", "WireFormat", "send"]
