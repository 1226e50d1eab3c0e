"""ClaudeCodeProxy: a gateway in front of Claude Code (plan first, Bedrock fallback)."""
