"""The ClaudeCodeProxy AWS CDK app: Network → Data (secrets, database) → Compute → Monitoring."""
