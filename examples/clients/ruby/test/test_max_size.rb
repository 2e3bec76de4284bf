# frozen_string_literal: true

# A node with small limits (tests/test_ruby_client.py starts one with max_size = 1024,
# max_ttl = 100 and queue_size = 20 for both transports and sets BERRYMQ_SMALL_TCP_URL and
# BERRYMQ_SMALL_HTTP_URL): a message over its max_size raises MessageTooLarge, not
# RemoteError or ConnectionClosed; with max_size: 1024 it is refused before it is sent.
# Its max_ttl is below the library's default ttl (1000): a connection made without a ttl
# gets the node's limit. A message its full queue refuses raises QueueFull. A session the
# node no longer knows closes its connection.
require_relative "test_helper"

class TestMaxSize < Minitest::Test
  include FreshBus
  include Waiting

  URLS = { "tcp" => ENV.fetch("BERRYMQ_SMALL_TCP_URL", nil), "http" => ENV.fetch("BERRYMQ_SMALL_HTTP_URL", nil) }.freeze
  WAIT = 20
  BIG = "x" * 2000

  def url(scheme)
    URLS[scheme] || skip("BERRYMQ_SMALL_#{scheme.upcase}_URL is not set (tests/test_ruby_client.py sets it)")
  end

  %w[tcp http].each do |scheme|
    # SPEC section 7: send_message to a full queue raises QueueFull; the message was not
    # stored, and the queue takes messages again once one is taken.
    define_method("test_a_full_queue_on_the_node_raises_queue_full_#{scheme}") do
      node = url(scheme)
      queue = BerryMQ.connect_via_queue(node, "full:*", ttl: 60)
      20.times { |i| queue.send_message("full:x", i) }
      error = assert_raises(BerryMQ::QueueFull) { queue.send_message("full:x", 20) }
      assert_equal "#{node} refused full:x: a queue on the node is full (queue_size 20); it was not stored there",
                   error.message
      assert_equal %w[queue_size 20], [error.data["setting"], error.data["limit"].to_s]
      assert_equal [0], queue.get(timeout: WAIT).args
      queue.send_message("full:x", 21)
      assert_equal [*1..19, 21], 20.times.map { queue.get(timeout: WAIT).args[0] }
    end

    # A session the node no longer knows (closed there: its ttl passed unused, or the node
    # restarted) closes the connection: the call raises ConnectionClosed naming the node
    # and the connection, which is closed and untracked, and the loss is logged once.
    define_method("test_a_session_the_node_no_longer_knows_closes_the_connection_#{scheme}") do
      node = url(scheme)
      log = []
      logger = Object.new
      logger.define_singleton_method(:error) { |text| log << text }
      BerryMQ.logger = logger
      queue = BerryMQ.connect_via_queue(node, "gone:*", ttl: 60)
      other = BerryMQ.connect_oneway(node, ttl: 60) # a token works from any connection
      other.send(:call, "close_connection", { "token" => queue.instance_variable_get(:@token) })
      error = assert_raises(BerryMQ::ConnectionClosed) { queue.get_nowait }
      assert_equal "the node no longer knows this connection to #{node} (queue): Unknown or expired token " \
                   "(-32001); connect again", error.message
      assert queue.closed?
      assert_equal [other], BerryMQ.connections
      assert_raises(BerryMQ::ConnectionClosed) { queue.send_message("gone:x", 1) }
      assert_equal 1, log.size, log.inspect
      assert_includes log[0], "the connection to #{node} (queue) is lost"
    end

    # With the node's max_size given, nothing too large is sent: every connection stays.
    define_method("test_max_size_refuses_before_sending_#{scheme}") do
      node = url(scheme)
      queue = BerryMQ.connect_via_queue(node, "small:*", ttl: 60, max_size: 1024)
      error = assert_raises(BerryMQ::MessageTooLarge) { queue.send_message("small:big", BIG) }
      assert_includes error.message, "over the limit of 512 bytes (max_size 1024 less 512); it was not sent"
      assert_raises(BerryMQ::MessageTooLarge) { queue.ask("small:big", BIG, timeout: WAIT) }
      interconnection = BerryMQ.interconnect(node, ttl: 60, max_size: 1024)
      error = assert_raises(BerryMQ::MessageTooLarge) { BerryMQ.twitter("small:big", BIG) }
      assert_includes error.message, "it was not sent"
      queue.send_message("small:one", 1)
      BerryMQ.twitter("small:two", 2)
      assert BerryMQ.flush(WAIT)
      assert_equal [["small:one", [1]], ["small:two", [2]]], 2.times.map { m = queue.get(timeout: WAIT); [m.id, m.args] }
      refute interconnection.closed?
      assert_equal 2, BerryMQ.connections.size
      assert_raises(ArgumentError) { BerryMQ.connect_oneway(node, max_size: 0) }
      # the smallest max_size is a node's smallest, 1024: below it no message has room
      error = assert_raises(ArgumentError) { BerryMQ.connect_oneway(node, max_size: 1023) }
      assert_equal "max_size must be an Integer of at least 1024 bytes (a message may take max_size less the " \
                   "512 bytes of the request around it), got 1023", error.message
    end

    # A message is at most max_size less 512 bytes as the node measures it ([identifier,
    # args, kwargs, extras] with the 20-character uid the node gives it): one of exactly
    # that size is sent and taken, one byte more is refused here, before it is sent.
    define_method("test_send_message_checks_the_message_size_#{scheme}") do
      node = url(scheme)
      queue = BerryMQ.connect_via_queue(node, "small:*", ttl: 60, max_size: 1024)
      empty = JSON.generate(["small:fit", [""], {}, { "uid" => "u" * 20 }]).bytesize
      fits = "x" * (512 - empty)
      queue.send_message("small:fit", fits)
      error = assert_raises(BerryMQ::MessageTooLarge) { queue.send_message("small:fit", "#{fits}x") }
      assert_equal "message small:fit is 513 bytes of JSON (measured as a node does: [identifier, args, " \
                   "kwargs, extras] with a uid, without hops), over the limit of 512 bytes (max_size " \
                   "1024 less 512); it was not sent", error.message
      queue.send_message("small:after", 1)
      assert_equal [["small:fit", [fits]], ["small:after", [1]]], 2.times.map { m = queue.get(timeout: WAIT); [m.id, m.args] }
    end

    # A connection made without a ttl gets 1000 s, or the node's max_ttl when that is less
    # (here 100), as docs/settings.md says of a client that leaves ttl out: every style
    # works (an interconnection renews every ttl/3 s of it); a ttl given over the node's
    # max_ttl is refused, naming the setting.
    define_method("test_without_a_ttl_a_session_gets_the_node_s_max_ttl_#{scheme}") do
      node = url(scheme)
      oneway = BerryMQ.connect_oneway(node)
      queue = BerryMQ.connect_via_queue(node, "ttl:*")
      link = BerryMQ.interconnect(node)
      assert_equal [100, 100, 100], [oneway, queue, link].map(&:ttl)
      oneway.send_message("ttl:x", 1)
      BerryMQ.twitter("ttl:y", 2)
      assert BerryMQ.flush(WAIT)
      assert_equal [["ttl:x", [1]], ["ttl:y", [2]]], 2.times.map { m = queue.get(timeout: WAIT); [m.id, m.args] }
      assert_equal 30, BerryMQ.connect_oneway(node, ttl: 30).ttl
      error = assert_raises(BerryMQ::RemoteError) { BerryMQ.connect_oneway(node, ttl: 1000) }
      assert_equal [BerryMQ::JSONRPC::CODES[:limit_reached], "max_ttl", 100],
                   [error.code, error.data["setting"], error.data["limit"]]
      assert_equal 4, BerryMQ.connections.size
    end

    # Without it, the node's own refusal is MessageTooLarge too. Over HTTP the connection
    # stays usable; over TCP the node closes the connection after it: the call that was too
    # large raises MessageTooLarge (naming the limit), the others ConnectionClosed.
    define_method("test_the_node_refusing_a_message_as_too_large_#{scheme}") do
      node = url(scheme)
      queue = BerryMQ.connect_via_queue(node, "small:*", ttl: 60)
      waiting = get_in_thread(queue)
      if scheme == "tcp"
        channel = queue.instance_variable_get(:@channel)
        eventually("the get is sent") { channel.waiting_calls == [1, 0] }
      end
      error = assert_raises(BerryMQ::MessageTooLarge) { queue.send_message("small:big", BIG) }
      assert_includes error.message, "over the node's size limit (max_size 1024 bytes)"
      if scheme == "tcp"
        assert_includes error.message, "pass max_size: 1024"
        assert_instance_of BerryMQ::ConnectionClosed, waiting.value
        assert_raises(BerryMQ::ConnectionClosed) { queue.send_message("small:after", 1) }
      else
        assert_raises(BerryMQ::MessageTooLarge) { queue.ask("small:big", BIG, timeout: WAIT) }
        queue.send_message("small:after", 1) # the connection is still usable
        assert_equal "small:after", waiting.value.id
      end
    end
  end
end
