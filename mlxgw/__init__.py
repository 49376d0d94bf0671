"""mlxgw: one local base URL for local MLX engines and the OpenAI and Anthropic clouds."""

__version__ = "0.1.0"
