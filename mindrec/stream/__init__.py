"""Online learning: the Kafka stream, the online trainer and the model versions it publishes."""
