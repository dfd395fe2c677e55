"""The delivery engine: key pool, priority queue, workers, and the channels that tell the buyer."""
