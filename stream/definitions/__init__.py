"""Which segment definitions a partition runs: the segments file and the definitions topic
resolved name by name, and the switch to new ones while a runtime runs, over a runtime-neutral
partition protocol. Reading the topic from Kafka is stream.kafka's."""
