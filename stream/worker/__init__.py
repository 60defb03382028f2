"""The native runtime: a confluent-kafka consumer group and a transactional producer around the
engine, one Kafka transaction per batch."""
