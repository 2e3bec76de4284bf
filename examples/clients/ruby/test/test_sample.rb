# frozen_string_literal: true

# The Ruby sample of the original berryMQ, as it was written: a class named Logger (the
# library does not load the standard library's Logger, so the name is free).
require_relative "test_helper"

class Logger
  include BerryMQ::Follower

  following("*:log")
  def receive_log(message)
    (@received ||= []) << [message.id, *message.args]
  end

  attr_reader :received
end

class TestSample < Minitest::Test
  include FreshBus

  def test_the_original_sample
    logger = Logger.new
    BerryMQ.twitter("do_something:log", "started")
    BerryMQ.twitter("do_something:run")
    assert_equal [["do_something:log", "started"]], logger.received
  end
end
