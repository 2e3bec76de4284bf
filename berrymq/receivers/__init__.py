"""The built-in receiver plugins: functions, Follower classes and queues."""
