"""Kafka plumbing every Kafka driver shares: client configuration and broker faults, topic
set-up, the embedded broker, partition ends and the definitions feed."""
