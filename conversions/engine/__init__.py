"""The async batch engine: plain asyncio + the openai SDK, no Django imports."""
