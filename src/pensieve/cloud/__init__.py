"""Cloud providers: configuration, the OpenAI-compatible cloud engine, circuit breakers and the registry."""
