# frozen_string_literal: true

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "berrymq"
require "minitest/autorun"

# Every test starts with a fresh bus whose receivers' errors are raised (as the Python
# suite's berrymq_bus fixture does).
module FreshBus
  def setup
    super
    BerryMQ.reset
    BerryMQ.raise_errors = true
  end

  def teardown
    BerryMQ.reset
    super
  end
end

# Waiting in tests: for a condition, polled until a deadline; for a get on a thread.
module Waiting
  # Seconds a test waits for something before it fails.
  WAIT_SECONDS = 20

  # Return once the block is true; fail the test saying +what+ after WAIT_SECONDS.
  def eventually(what)
    deadline = BerryMQ.monotonic + WAIT_SECONDS
    until yield
      flunk "#{what}: not within #{WAIT_SECONDS} s" if BerryMQ.monotonic > deadline
      Thread.pass
      sleep 0.01
    end
  end

  # A thread that gets from +queue+; its value is the message, or the error it raised.
  def get_in_thread(queue)
    Thread.new do
      queue.get(timeout: WAIT_SECONDS)
    rescue StandardError => e
      e
    end
  end
end
