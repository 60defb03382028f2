"""The native runtime: confluent-kafka consumer and transactional producer around the engine."""
