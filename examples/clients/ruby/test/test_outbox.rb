# frozen_string_literal: true

# The outbox that forwards an interconnection's messages: coalescing, flush, bounds,
# failure (no node needed: the sink stands in for the node).
require_relative "test_helper"

class TestOutbox < Minitest::Test
  include FreshBus

  def test_messages_sent_while_a_batch_is_on_its_way_go_out_together
    batches = []
    gate = BerryMQ::Waiter.new
    outbox = BerryMQ::Outbox.new("test") do |batch|
      gate.wait(10) if batches.empty? # the first batch is held up ...
      batches << batch
    end
    outbox.put(["a:b", [1], {}])
    outbox.put(["a:b", [2], {}]) # ... while these gather
    outbox.put(["a:b", [3], {}])
    gate.set
    assert outbox.flush(10)
    assert_equal [1, 2, 3], batches.flatten(1).map { |m| m[1].first }
    assert_operator batches.size, :<=, 2
    assert_equal 3, outbox.sent
  ensure
    outbox&.close
  end

  def test_batches_stay_under_the_size_limit_and_big_messages_are_refused
    batches = []
    outbox = BerryMQ::Outbox.new("test", max_bytes: 100) { |batch| batches << batch }
    error = assert_raises(BerryMQ::MessageTooLarge) { outbox.put(["a:b", ["x" * 200], {}]) }
    assert_includes error.message, "over the size limit of 100 bytes"
    5.times { |i| outbox.put(["a:b", ["x" * 30, i], {}]) }
    assert outbox.flush(10)
    assert_equal [0, 1, 2, 3, 4], batches.flatten(1).map { |m| m[1].last }
    batches.each { |batch| assert_operator JSON.generate(batch).bytesize, :<=, 100 + 2 }
  ensure
    outbox&.close
  end

  def test_a_full_outbox_pushes_back_then_refuses
    gate = BerryMQ::Waiter.new
    outbox = BerryMQ::Outbox.new("test", limit: 2, block_timeout: 0.2) { |_batch| gate.wait(10) }
    outbox.put(["a:b", [0], {}]) # taken by the thread, which waits in the sink
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
    Thread.pass until outbox.instance_variable_get(:@queued).zero? || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
    outbox.put(["a:b", [1], {}])
    outbox.put(["a:b", [2], {}])
    error = assert_raises(BerryMQ::TransportError) { outbox.put(["a:b", [3], {}]) }
    assert_includes error.message, "2 messages wait to be sent"
    assert_includes error.message, "this message was not sent"
    gate.set
    assert outbox.flush(10)
    assert_equal 3, outbox.sent
  ensure
    gate&.set
    outbox&.close
  end

  def test_a_failed_node_is_reported_not_silent
    log = []
    logger = Object.new
    logger.define_singleton_method(:error) { |text| log << text }
    BerryMQ.logger = logger
    outbox = BerryMQ::Outbox.new("to the node") { |_batch| raise BerryMQ::ConnectionClosed, "node gone" }
    outbox.put(["a:b", [1], {}])
    error = assert_raises(BerryMQ::ConnectionClosed) { outbox.flush(10) }
    assert_includes error.message, "node gone"
    assert_equal 1, outbox.lost
    assert_equal ["to the node: could not forward 1 message(s): node gone"], log
    error = assert_raises(BerryMQ::ConnectionClosed) { outbox.put(["a:b", [2], {}]) }
    assert_includes error.message, "node gone"
  ensure
    outbox&.close
  end
end
